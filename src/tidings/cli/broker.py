"""``tidings publish``, ``tidings tail`` and ``tidings topics``: the broker from the shell."""

from __future__ import annotations

import contextlib
import json
import sys
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from tidings.app import App
from tidings.app.deadletters import DLQ_GROUP, DLQ_SUFFIX, dlq_topic
from tidings.cli._common import URL_DEFAULT, BrokerUrl, fail, out_console, run_async
from tidings.errors import MessageError, TidingsError
from tidings.message import CE_PREFIX, Envelope, Message
from tidings.transports import Transport, open_transport

__all__ = ["message_line", "publish", "structured", "tail", "topic_rows", "topics"]


# ---------------------------------------------------------------------------------- publish


def _parse_headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            fail(f"--header {item!r}: expected name=value")
        headers[name.strip()] = value
    return headers


def publish(
    topic: Annotated[str, typer.Argument(help="Topic to publish to.")],
    body: Annotated[str, typer.Argument(help="The event data as JSON, e.g. '{\"id\": 1}'.")],
    type_: Annotated[
        str | None,
        typer.Option("--type", "-t", help="CloudEvents type (default: json)."),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", "-k", help="Partition/ordering key.")] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", metavar="NAME=VALUE", help="Extra header (repeatable)."),
    ] = None,
    delay: Annotated[
        float | None, typer.Option("--delay", min=0, help="Hold delivery back this many seconds.")
    ] = None,
    ttl: Annotated[
        float | None,
        typer.Option("--ttl", min=0, help="Dead-letter (reason expired) if unconsumed this long."),
    ] = None,
    url: BrokerUrl = URL_DEFAULT,
) -> None:
    """Publish one event with a JSON body; prints its message id."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        fail(f"the body is not valid JSON ({exc}); quote it for the shell: '{{\"id\": 1}}'")
    headers = _parse_headers(header or [])

    async def go() -> str:
        app = App(url, source="tidings.cli")
        try:
            return await app.publish(
                topic,
                data,
                key=key,
                headers=headers or None,
                delay=delay or None,
                ttl=ttl or None,
                type=type_ or "json",
            )
        finally:
            await app.stop()
            await app.transport.close()

    message_id = run_async(go())
    typer.echo(message_id)


# ---------------------------------------------------------------------------------- tail


def structured(message: Message) -> dict[str, Any]:
    """The message as a structured-mode CloudEvent (raw fields when it is not one)."""
    try:
        out = Envelope.from_message(message).to_structured()
    except MessageError:
        try:
            data: Any = json.loads(message.body)
        except ValueError:
            data = message.body.decode("utf-8", "replace")
        out = {"id": message.id, "headers": dict(message.headers), "data": data}
    out["topic"] = message.topic
    return out


def _short_time(message: Message) -> str:
    raw = message.headers.get(CE_PREFIX + "time")
    if raw:
        try:
            return (
                datetime.fromisoformat(raw.replace("Z", "+00:00"))
                .astimezone()
                .strftime("%H:%M:%S.%f")[:-3]
            )
        except ValueError:
            return raw
    return "--:--:--.---"


def message_line(message: Message) -> str:
    """One Rich-markup line: time, type, id, key, data."""
    type_name = message.headers.get(CE_PREFIX + "type", "?")
    body = message.body.decode("utf-8", "replace")
    if len(body) > 500:
        body = body[:500] + "…"
    key = f" [magenta]key={escape(message.key)}[/]" if message.key is not None else ""
    return (
        f"[dim]{_short_time(message)}[/] [bold cyan]{escape(type_name)}[/] "
        f"[dim]{message.id}[/]{key} {escape(body)}"
    )


def tail(
    topic: Annotated[str, typer.Argument(help="Topic to follow.")],
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            "-g",
            help="Consume as this group (shares work with its other consumers). "
            "Default: a new group `tail-<uuid>`.",
        ),
    ] = None,
    start: Annotated[
        Literal["latest", "earliest"],
        typer.Option("--from", help="Where a new group starts: latest, or earliest retained."),
    ] = "latest",
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Exit after this many messages.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each as a structured CloudEvent, one per line.")
    ] = False,
    url: BrokerUrl = URL_DEFAULT,
) -> None:
    """Print messages of a topic as they arrive (acks each one it prints).

    Without `--group`, a fresh group `tail-<uuid>` is created and deleted on exit, so it
    retains nothing afterwards.
    """
    name = group or f"tail-{uuid.uuid4().hex[:12]}"
    console = out_console()

    async def go() -> None:
        transport = open_transport(url)
        try:
            await transport.start()
            subscription = await transport.subscribe(topic, name, start=start, lease=30.0)
            seen = 0
            try:
                while limit is None or seen < limit:
                    want = 100 if limit is None else min(100, limit - seen)
                    batch = await subscription.fetch(want)
                    if not batch:
                        return
                    for delivery in batch:
                        if as_json:
                            sys.stdout.write(json.dumps(structured(delivery.message)) + "\n")
                            sys.stdout.flush()
                        else:
                            console.print(message_line(delivery.message))
                        await delivery.ack()
                        seen += 1
            finally:
                await subscription.close()
                if group is None:
                    with contextlib.suppress(TidingsError):
                        await transport.delete_group(topic, name)
        finally:
            await transport.close()

    run_async(go())


# ---------------------------------------------------------------------------------- topics


async def topic_rows(transport: Transport, include_dlq: bool = False) -> list[dict[str, Any]]:
    """One row per (topic, group): messages, pending, in flight and that group's dead letters."""
    stats = await transport.stats()
    dead: dict[str, int] = {
        t.topic: sum(g.pending for g in t.groups if g.group == DLQ_GROUP)
        for t in stats
        if t.topic.endswith(DLQ_SUFFIX)
    }
    rows: list[dict[str, Any]] = []
    for t in stats:
        if t.topic.endswith(DLQ_SUFFIX) and not include_dlq:
            continue
        if not t.groups:
            rows.append({"topic": t.topic, "messages": t.messages, "group": None})
        for g in t.groups:
            rows.append(
                {
                    "topic": t.topic,
                    "messages": t.messages,
                    "group": g.group,
                    "pending": g.pending,
                    "inflight": g.inflight,
                    "dead_letters": dead.get(dlq_topic(t.topic, g.group), 0),
                }
            )
    return rows


def topics(
    include_dlq: Annotated[
        bool, typer.Option("--all", "-a", help="Also list the `<topic>.<group>.dlq` topics.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
    url: BrokerUrl = URL_DEFAULT,
) -> None:
    """Topics with message counts, their groups' pending / in-flight, and dead letters."""

    async def go() -> list[dict[str, Any]]:
        transport = open_transport(url)
        try:
            await transport.start()
            return await topic_rows(transport, include_dlq)
        finally:
            await transport.close()

    rows = run_async(go())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    console = out_console()
    if not rows:
        console.print("[dim]no topics yet[/]")
        return
    table = Table(title=f"topics on {escape(url)}", title_justify="left")
    table.add_column("topic", style="bold")
    table.add_column("messages", justify="right")
    table.add_column("group", style="cyan")
    table.add_column("pending", justify="right")
    table.add_column("in flight", justify="right")
    table.add_column("dead letters", justify="right")
    previous = None
    for row in rows:
        first = row["topic"] != previous
        previous = row["topic"]
        if row["group"] is None:
            table.add_row(escape(row["topic"]), str(row["messages"]), "[dim](no groups)[/]")
            continue
        dead = row["dead_letters"]
        table.add_row(
            escape(row["topic"]) if first else "",
            str(row["messages"]) if first else "",
            escape(row["group"]),
            str(row["pending"]),
            str(row["inflight"]),
            f"[red]{dead}[/]" if dead else "0",
        )
    console.print(table)
