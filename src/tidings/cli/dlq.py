"""``tidings dlq``: list, show, replay and purge dead letters (DESIGN §4.10)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from tidings.app.deadletters import DeadLetter, DeadLetters
from tidings.cli._common import URL_DEFAULT, BrokerUrl, fail, out_console, run_async
from tidings.transports import open_transport

__all__ = ["dlq_app"]

T = TypeVar("T")

dlq_app = typer.Typer(
    help="Dead letters: list, show, replay to the original topic, purge.",
    no_args_is_help=True,
)

TopicOpt = Annotated[
    str | None, typer.Option("--topic", help="Only dead letters of this original topic.")
]
GroupOpt = Annotated[
    str | None, typer.Option("--group", "-g", help="Only dead letters of this group.")
]
IdsOpt = Annotated[
    list[str] | None, typer.Option("--id", metavar="ID", help="Only this message id (repeatable).")
]
AllOpt = Annotated[bool, typer.Option("--all", help="Every dead letter (that matches filters).")]


def _with_dead_letters(url: str, work: Callable[[DeadLetters], Awaitable[T]]) -> T:
    async def go() -> T:
        transport = open_transport(url)
        try:
            await transport.start()
            return await work(DeadLetters(transport))
        finally:
            await transport.close()

    return run_async(go())


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _summary(d: DeadLetter) -> dict[str, Any]:
    return {
        "id": d.id,
        "topic": d.topic,
        "group": d.group,
        "reason": d.reason,
        "attempts": d.attempts,
        "error_type": d.error_type,
        "error": d.error,
        "first_failure": d.first_failure,
        "last_failure": d.last_failure,
    }


@dlq_app.command("list")
def list_(
    topic: TopicOpt = None,
    group: GroupOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
    url: BrokerUrl = URL_DEFAULT,
) -> None:
    """Dead letters, oldest first: id, topic, group, reason, attempts, error."""
    letters = _with_dead_letters(url, lambda dl: dl.list(topic, group, limit))
    if as_json:
        typer.echo(json.dumps([_summary(d) for d in letters], indent=2))
        return
    console = out_console()
    if not letters:
        console.print("[dim]no dead letters[/]")
        return
    table = Table(title=f"{len(letters)} dead letter(s)", title_justify="left")
    for name in ("id", "topic", "group", "reason", "attempts", "error", "last failure"):
        table.add_column(name, justify="right" if name == "attempts" else "left")
    for d in letters:
        error = f"{d.error_type}: {d.error}" if d.error_type else d.error
        table.add_row(
            d.id,
            escape(d.topic),
            escape(d.group),
            d.reason,
            str(d.attempts),
            escape(error[:80]),
            _when(d.last_failure),
        )
    console.print(table)


@dlq_app.command()
def show(
    message_id: Annotated[str, typer.Argument(metavar="ID", help="The dead letter's message id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    url: BrokerUrl = URL_DEFAULT,
) -> None:
    """One dead letter in full: reason, error, traceback, headers and body."""
    d = _with_dead_letters(url, lambda dl: dl.show(message_id))
    body = d.message.body.decode("utf-8", "replace")
    if as_json:
        out = _summary(d) | {
            "traceback": d.traceback,
            "headers": dict(d.message.headers),
            "key": d.message.key,
            "body": body,
        }
        typer.echo(json.dumps(out, indent=2))
        return
    console = out_console()
    console.print(f"[bold]dead letter[/] {d.id}")
    for label, value in (
        ("topic", d.topic),
        ("group", d.group),
        ("reason", d.reason),
        ("attempts", str(d.attempts)),
        ("error", f"{d.error_type}: {d.error}" if d.error_type else d.error or "-"),
        ("first failure", _when(d.first_failure)),
        ("last failure", _when(d.last_failure)),
        ("key", d.message.key or "-"),
    ):
        console.print(f"  [cyan]{label:<14}[/] {escape(value)}")
    console.print("[bold]headers[/]")
    for name, value in sorted(d.message.headers.items()):
        if name.startswith("dlq-"):
            continue
        console.print(f"  [cyan]{escape(name)}[/]: {escape(value)}")
    console.print("[bold]body[/]")
    try:
        pretty = json.dumps(json.loads(body), indent=2)
    except ValueError:
        pretty = body
    console.print(escape(pretty))
    if d.traceback:
        console.print("[bold]traceback[/]")
        console.print(escape(d.traceback.rstrip()), style="dim")


def _selection(
    topic: str | None, group: str | None, ids: list[str] | None, all_: bool, verb: str
) -> None:
    if not (ids or all_ or topic or group):
        fail(
            f"say which dead letters to {verb}: --id ID (repeatable), --topic/--group filters, "
            f"or --all; see `tidings dlq list`"
        )


@dlq_app.command()
def replay(
    topic: TopicOpt = None,
    group: GroupOpt = None,
    ids: IdsOpt = None,
    all_: AllOpt = False,
    url: BrokerUrl = URL_DEFAULT,
) -> None:
    """Republish dead letters to their original topic, for the group that failed them."""
    _selection(topic, group, ids, all_, "replay")
    count = _with_dead_letters(url, lambda dl: dl.replay(topic, group, ids or None))
    out_console().print(f"replayed {count} dead letter(s)")
    if ids and count < len(set(ids)):
        fail(f"{len(set(ids)) - count} of the given ids are not dead letters", 1)


@dlq_app.command()
def purge(
    topic: TopicOpt = None,
    group: GroupOpt = None,
    ids: IdsOpt = None,
    all_: AllOpt = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: BrokerUrl = URL_DEFAULT,
) -> None:
    """Delete dead letters for good (asks first unless --yes)."""
    _selection(topic, group, ids, all_, "purge")
    if not yes:
        what = (
            f"{len(ids)} dead letter(s) by id"
            if ids
            else "every dead letter"
            + (f" of topic {topic!r}" if topic else "")
            + (f" of group {group!r}" if group else "")
        )
        typer.confirm(f"Delete {what}? This cannot be undone", abort=True)
    count = _with_dead_letters(url, lambda dl: dl.purge(topic, group, ids or None))
    out_console().print(f"purged {count} dead letter(s)")
