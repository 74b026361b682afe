"""``tidings store``: browse an event store from the shell.

Commands: ``streams``, ``read``, ``tail``, ``stats``. Each takes ``--url`` (environment
variable ``TIDINGS_STORE_URL``, default ``sqlite:///./tidings.db``). Errors from the store
(a bad URL, an unreachable database, a missing stream) print one line on stderr and exit
with code 2 (usage and configuration) or 1 (the store said no); never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tidings.config import DEFAULT_URL
from tidings.errors import ConfigurationError, StreamDeleted, StreamNotFound, TidingsError
from tidings.store import EventStore
from tidings.store.base import RecordedEvent, StreamInfo

__all__ = ["store_app"]

T = TypeVar("T")

store_app = typer.Typer(
    help="Browse the event store: list streams, read a stream (as of a time or version), "
    "follow the global log live, show statistics.",
    no_args_is_help=True,
)

Url = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="TIDINGS_STORE_URL",
        help="Event store URL: sqlite:///path.db, postgresql://user@host/db or memory://.",
        show_default=True,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

_STATS_LIMIT = 2**31 - 1


# -- plumbing ------------------------------------------------------------------------------


def _run(url: str, work: Callable[[EventStore], Awaitable[T]]) -> T:
    """Open the store at ``url``, run ``work`` with it, close it; map errors to exit codes."""

    async def main() -> T:
        async with EventStore(url) as store:
            return await work(store)

    return _guard(main())


def _guard(coro: Coroutine[Any, Any, T]) -> T:
    err = Console(stderr=True)
    try:
        return asyncio.run(coro)
    except (StreamNotFound, StreamDeleted) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except (ConfigurationError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except TidingsError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _parse_time(value: str) -> float:
    """A Unix time or an ISO 8601 time (naive means UTC) → Unix seconds."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither an ISO 8601 time (2026-11-26T21:00:00Z) nor a Unix time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _data_text(event: RecordedEvent) -> str:
    try:
        return event.data.decode()
    except UnicodeDecodeError:
        return repr(event.data)


def _as_dict(event: RecordedEvent) -> dict[str, Any]:
    try:
        data: Any = json.loads(event.data)
    except ValueError:
        data = _data_text(event)
    return {
        "position": event.position,
        "stream": event.stream,
        "version": event.version,
        "type": event.type,
        "dataversion": event.dataversion,
        "id": event.id,
        "recorded_at": _iso(event.recorded_at),
        "metadata": event.metadata,
        "data": data,
    }


def _events_table(events: list[RecordedEvent], title: str) -> Table:
    table = Table(title=title)
    table.add_column("pos", justify="right")
    table.add_column("stream")
    table.add_column("ver", justify="right")
    table.add_column("recorded (UTC)")
    table.add_column("type")
    table.add_column("data", overflow="fold")
    for e in events:
        type_ = e.type if e.dataversion == 1 else f"{e.type} v{e.dataversion}"
        table.add_row(
            str(e.position), e.stream, str(e.version), _iso(e.recorded_at), type_, _data_text(e)
        )
    return table


def _category(stream: str) -> str:
    return stream.split("-", 1)[0] if "-" in stream else stream


# -- commands ------------------------------------------------------------------------------


@store_app.command("streams")
def streams(
    prefix: Annotated[str, typer.Option(help="Only streams whose name starts with this.")] = "",
    limit: Annotated[int, typer.Option(min=1, help="At most this many streams.")] = 1000,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
) -> None:
    """List streams with their version, event count and last write time."""
    found: list[StreamInfo] = _run(url, lambda store: store.streams(prefix, limit))
    console = Console()
    if as_json:
        rows = [
            {
                "stream": s.stream,
                "version": s.version,
                "events": s.events,
                "deleted": s.deleted,
                "last_recorded_at": _iso(s.last_recorded_at),
            }
            for s in found
        ]
        console.print_json(json.dumps(rows))
        return
    table = Table(
        title=f"{len(found)} stream(s)" + (f" starting with {prefix!r}" if prefix else "")
    )
    for column in ("stream", "version", "events", "last write (UTC)", "deleted"):
        table.add_column(column)
    for s in found:
        deleted = "yes" if s.deleted else ""
        table.add_row(s.stream, str(s.version), str(s.events), _iso(s.last_recorded_at), deleted)
    console.print(table)


@store_app.command("read")
def read(
    stream: Annotated[str, typer.Argument(help="Stream name, e.g. account-42.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Only events committed at or before this time "
            "(ISO 8601, naive = UTC, or Unix seconds).",
        ),
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", min=0, help="Only events up to this version.")
    ] = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
) -> None:
    """Print a stream's events, optionally as they stood at a time or version."""
    if as_of is not None and version is not None:
        raise typer.BadParameter("give --as-of or --version, not both")
    when = _parse_time(as_of) if as_of is not None else None

    async def work(store: EventStore) -> list[RecordedEvent]:
        if await store.stream_info(stream) is None:
            raise StreamNotFound(f"stream {stream!r} not found")
        if when is None and version is None:
            return await store.read(stream)
        return await store.read_as_of(stream, version=version, time=when)

    events = _run(url, work)
    console = Console()
    if as_json:
        console.print_json(json.dumps([_as_dict(e) for e in events]))
        return
    suffix = (
        f" as of {as_of}" if as_of else (f" up to version {version}" if version is not None else "")
    )
    console.print(_events_table(events, f"{stream}{suffix}: {len(events)} event(s)"))


@store_app.command("tail")
def tail(
    from_position: Annotated[
        int | None,
        typer.Option(
            "--from",
            min=0,
            help="Start at this global position "
            "(default: only events appended from now on; 1 = everything).",
        ),
    ] = None,
    category: Annotated[str | None, typer.Option(help="Only streams named <category>-*.")] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Exit after this many events (default: follow).")
    ] = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
) -> None:
    """Follow the global log live (Ctrl-C to stop)."""
    console = Console()

    async def work(store: EventStore) -> int:
        start = from_position if from_position is not None else await store.head() + 1
        seen = 0
        events = store.subscribe(start, category=category)
        try:
            async for event in events:
                if as_json:
                    console.print_json(json.dumps(_as_dict(event)), indent=None)
                else:
                    console.print(
                        f"{event.position:>8} {_iso(event.recorded_at)} {event.stream}@"
                        f"{event.version} {event.type} {_data_text(event)}",
                        highlight=False,
                        soft_wrap=True,
                    )
                seen += 1
                if limit is not None and seen >= limit:
                    break
        finally:
            # Close the subscription now, not at garbage collection (its generator would
            # otherwise be finalised after the event loop is gone).
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
        return seen

    with contextlib.suppress(KeyboardInterrupt):
        _run(url, work)


@store_app.command("stats")
def stats(as_json: AsJson = False, url: Url = DEFAULT_URL) -> None:
    """Head position, number of streams and events, events per category."""

    async def work(store: EventStore) -> tuple[int, list[StreamInfo]]:
        return await store.head(), await store.streams("", _STATS_LIMIT)

    head, infos = _run(url, work)
    per_category: dict[str, list[int]] = {}
    for info in infos:
        counts = per_category.setdefault(_category(info.stream), [0, 0])
        counts[0] += 1
        counts[1] += info.events
    summary = {
        "head": head,
        "streams": len(infos),
        "deleted_streams": sum(1 for i in infos if i.deleted),
        "events": sum(i.events for i in infos),
        "categories": {
            c: {"streams": s, "events": e} for c, (s, e) in sorted(per_category.items())
        },
    }
    console = Console()
    if as_json:
        console.print_json(json.dumps(summary))
        return
    console.print(
        f"head position [bold]{head}[/]  streams [bold]{summary['streams']}[/] "
        f"(deleted {summary['deleted_streams']})  events [bold]{summary['events']}[/]"
    )
    table = Table(title="per category")
    for column in ("category", "streams", "events"):
        table.add_column(column, justify="right" if column != "category" else "left")
    for name, (n_streams, n_events) in sorted(per_category.items()):
        table.add_row(name, str(n_streams), str(n_events))
    console.print(table)
