"""``tidings demo``: the live like counter in the terminal (Rich ``Live``).

The app itself (events, the three groups, the producer) is :mod:`tidings.demo.likes`; this
module only draws it and checks, at the end, that the numbers add up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import tempfile
import time
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from tidings.app import DeadLetter
from tidings.cli._common import out_console, run_async
from tidings.demo.likes import FLAKY_RETRY, GROUPS, LikesDemo

__all__ = ["demo"]

DRAIN_TIMEOUT = 60.0
"""Seconds to wait, after publishing stops, for every group to settle."""


def _render(
    d: LikesDemo, url: str, backlog: dict[str, tuple[int, int]], elapsed: float, phase: str
) -> RenderableType:
    s = d.state
    head = (
        f"[bold]tidings like counter[/]  [dim]{escape(url)}[/]  {elapsed:5.1f}s  [yellow]{phase}[/]"
    )

    totals = Table(title="likes", title_justify="left", box=None, padding=(0, 1))
    totals.add_column("", style="cyan", no_wrap=True)
    totals.add_column("", justify="right", no_wrap=True)
    totals.add_row("published", str(s.published))
    totals.add_row("counted", str(s.counted))
    totals.add_row("notifier saw", str(s.notified))
    totals.add_row("milestones", str(s.milestones))
    totals.add_row("flaky handled", str(s.flaky_handled))
    totals.add_row("flaky retries", str(d.retries()))
    totals.add_row("flaky dead letters", f"[red]{d.dead_lettered()}[/]")

    top = Table(title="top posts", title_justify="left", box=None, padding=(0, 1))
    top.add_column("post", style="bold", no_wrap=True)
    top.add_column("counter", justify="right", no_wrap=True)
    top.add_column("notifier", justify="right", no_wrap=True)
    for post, n in s.counts.most_common(8):
        top.add_row(post, str(n), str(s.notifier_counts[post]))

    broker = Table(title="broker backlog", title_justify="left", box=None, padding=(0, 1))
    broker.add_column("group", style="cyan", no_wrap=True)
    broker.add_column("pending", justify="right", no_wrap=True)
    broker.add_column("in flight", justify="right", no_wrap=True)
    for g in GROUPS:
        pending, inflight = backlog.get(g, (0, 0))
        broker.add_row(g, str(pending), str(inflight))

    news = "\n".join(f"* {escape(n)}" for n in s.notifications) or "[dim]no milestones yet[/]"
    notes = Table(title="notifications", title_justify="left", box=None, show_header=False)
    notes.add_column("", no_wrap=True, overflow="ellipsis")
    notes.add_row(news)
    grid = Table.grid(padding=(0, 3))
    grid.add_row(totals, top)
    grid.add_row(broker, notes)
    return Panel(grid, title=head, title_align="left")


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """The dispatcher logs every retry and dead letter; the screen shows them instead."""
    logger = logging.getLogger("tidings")
    handler = logging.NullHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _summary(d: LikesDemo, letters: list[DeadLetter], backlog: dict[str, tuple[int, int]]) -> int:
    console = out_console()
    s = d.state
    dead = len(letters)
    problems: list[str] = []
    if s.counted != s.published:
        problems.append(f"counter counted {s.counted} of {s.published} likes")
    if s.notified != s.published:
        problems.append(f"notifier saw {s.notified} of {s.published} likes")
    if s.flaky_handled + dead != s.published:
        problems.append(
            f"flaky handled {s.flaky_handled} + dead-lettered {dead} = "
            f"{s.flaky_handled + dead}, not {s.published}"
        )
    stuck = {g: p for g, (p, _) in backlog.items() if p}
    if stuck:
        problems.append(f"still pending after {DRAIN_TIMEOUT:.0f}s: {stuck}")

    def mark(ok: bool) -> str:
        return "[green]ok[/]" if ok else "[red]MISMATCH[/]"

    console.print()
    console.print("[bold]final counts[/]")
    console.print(f"  published:          {s.published}")
    console.print(f"  counted:            {s.counted}  {mark(s.counted == s.published)}")
    console.print(
        f"  notifier saw:       {s.notified}  {mark(s.notified == s.published)}"
        f"  ({s.milestones} milestones)"
    )
    console.print(f"  flaky handled:      {s.flaky_handled}")
    console.print(f"  flaky dead letters: {dead}")
    console.print(
        f"  flaky retries:      {d.retries()}  (Retry(max_attempts={FLAKY_RETRY.max_attempts}, "
        f"backoff={FLAKY_RETRY.backoff}))"
    )
    console.print(
        f"  handled + dead:     {s.flaky_handled + dead}  "
        f"{mark(s.flaky_handled + dead == s.published)}"
    )
    if s.duplicates or s.foreign:
        console.print(
            f"  [dim]redeliveries ignored: {s.duplicates}; events of other runs skipped: "
            f"{s.foreign}[/]"
        )
    top = ", ".join(f"{p}={n}" for p, n in s.counts.most_common(5))
    console.print(f"  top posts:          {top or '-'}")
    if letters:
        shown = letters[:10]
        table = Table(
            title=f"dead letters of group flaky ({dead}, showing {len(shown)}; "
            "see `tidings dlq list --group flaky`)",
            title_justify="left",
            box=None,
            padding=(0, 1),
        )
        table.add_column("id", no_wrap=True, min_width=36)
        table.add_column("why/tries", no_wrap=True)
        table.add_column(
            "error", no_wrap=True, overflow="ellipsis", max_width=max(console.width - 52, 12)
        )
        for letter in shown:
            table.add_row(
                letter.id,
                f"{letter.reason}/{letter.attempts}",
                escape(letter.error or letter.error_type),
            )
        console.print(table)
        causes = collections.Counter(
            (d.reason, d.attempts, d.error or d.error_type) for d in letters
        )
        console.print("  by cause:")
        for (reason, attempts, error), n in causes.most_common():
            console.print(f"    {n:>5} x {reason} after {attempts} attempt(s): {escape(error)}")
    if problems:
        for p in problems:
            console.print(f"[red]FAILED:[/] {escape(p)}")
        return 1
    console.print(
        f"[green]OK:[/] all {s.published} likes counted and notified; flaky settled "
        f"({s.flaky_handled} handled, {dead} dead-lettered)"
    )
    return 0


async def _run_demo(url: str, duration: float | None, rate: float, console: Console) -> int:
    from rich.live import Live

    d = LikesDemo(url)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    abort = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            abort.set()  # a second Ctrl-C skips the drain
        stop.set()

    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
    try:
        await d.app.start()
        started = time.monotonic()
        producer = asyncio.create_task(d.produce(rate, stop), name="demo:producer")
        backlog = await d.pending()
        with Live(
            _render(d, url, backlog, 0.0, "publishing"),
            console=console,
            refresh_per_second=4,
            auto_refresh=False,
        ) as live:
            while not stop.is_set():
                elapsed = time.monotonic() - started
                if duration is not None and elapsed >= duration:
                    stop.set()
                    break
                backlog = await d.pending()
                live.update(_render(d, url, backlog, elapsed, "publishing"), refresh=True)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        await stop.wait()
            await producer
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while not abort.is_set():
                backlog = await d.pending()
                elapsed = time.monotonic() - started
                live.update(_render(d, url, backlog, elapsed, "draining"), refresh=True)
                if all(p == 0 for p, _ in backlog.values()) or time.monotonic() > deadline:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        await abort.wait()
            elapsed = time.monotonic() - started
            live.update(_render(d, url, backlog, elapsed, "done"), refresh=True)
        letters = await d.dead_letters()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await d.app.stop()
    return _summary(d, letters, backlog)


def demo(
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            "-d",
            min=0.1,
            help="Publish for this many seconds, drain, print the totals and exit "
            "(0 if they add up, else 1). Default: until Ctrl-C.",
        ),
    ] = None,
    rate: Annotated[
        float, typer.Option("--rate", "-r", min=1, help="Likes published per second.")
    ] = 200.0,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Broker URL. Default: a fresh SQLite file in a temporary directory, so "
            "every run starts clean ($TIDINGS_BROKER_URL is not used here).",
        ),
    ] = None,
) -> None:
    """The live like counter: a producer, counter, notifier and a flaky group with retries.

    Likes go to topic 'likes'; group 'counter' counts per post, 'notifier' announces every
    100th like of a post, 'flaky' fails ~30% of attempts (and always for post-13) with
    Retry(max_attempts=3, backoff=0.05), so it ends with dead letters.
    """
    console = out_console()

    async def go() -> int:
        with tempfile.TemporaryDirectory(prefix="tidings-demo-") as tmp:
            target = url or f"sqlite:///{tmp}/demo.db"
            with _quiet_logs():
                return await _run_demo(target, duration, rate, console)

    code = run_async(go())
    if code:
        raise typer.Exit(code)
