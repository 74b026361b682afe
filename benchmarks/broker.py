"""End-to-end broker throughput and latency: publish → handler → ack.

Usage::

    uv run python benchmarks/broker.py                 # memory + sqlite, default sizes
    uv run python benchmarks/broker.py --n 50000 --backends sqlite --profile

For each backend it runs three publish modes — ``batched`` (``publish_many`` of ``--batch``
events per call: one commit per batch), ``single`` (``publish`` awaited alone, from
``--publishers`` concurrent publishers, each publish durable on return) and ``paced``
(``--rate`` messages/s for 5 s, to read latency without a backlog) — and reports
messages/s from the first publish to the last ack, plus p50/p99 publish→handler latency.
In the first two the publishers outrun the consumer, so their latency is queueing time.
It also measures the raw sqlite3 insert and select rates on this machine (the physical limit
of the SQLite transport) and prints each figure as a ratio of it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import platform
import pstats
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tidings import App, Event


class Tick(Event):
    __type__ = "bench.Tick"
    n: int
    sent: float


@dataclass
class Result:
    backend: str
    mode: str
    n: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.n / self.seconds


def raw_sqlite(path: Path, n: int) -> tuple[float, float, float]:
    """Rows/s for batched insert (one transaction), single-row commits (FULL), and select."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, topic TEXT, body BLOB)")
    body = b'{"n":1,"sent":1.0}' * 2
    rows = [("bench", body)] * n
    t0 = time.perf_counter()
    con.execute("BEGIN")
    con.executemany("INSERT INTO t (topic, body) VALUES (?, ?)", rows)
    con.execute("COMMIT")
    batched = n / (time.perf_counter() - t0)
    k = min(n, 2000)
    t0 = time.perf_counter()
    for _ in range(k):
        con.execute("INSERT INTO t (topic, body) VALUES (?, ?)", ("bench", body))
    single = k / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    count = len(con.execute("SELECT id, topic, body FROM t").fetchall())
    select = count / (time.perf_counter() - t0)
    con.close()
    return batched, single, select


async def run_case(
    url: str, mode: str, n: int, batch: int, publishers: int, args_rate: float = 1000.0
) -> Result:
    if mode == "single":
        n = n // publishers * publishers
    app = App(url, grace=5.0)
    latencies: list[float] = []
    done = asyncio.Event()

    @app.subscribe("bench", group="bench", concurrency=16, prefetch=512)
    async def handle(event: Tick) -> None:
        latencies.append(time.time() - event.sent)
        if len(latencies) == n:
            done.set()

    await app.start()
    t0 = time.perf_counter()
    if mode == "paced":
        interval = 1.0 / args_rate
        start = time.perf_counter()
        for i in range(n):
            await app.publish("bench", Tick(n=i, sent=time.time()))
            delay = start + (i + 1) * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
    elif mode == "batched":
        for start in range(0, n, batch):
            now = time.time()
            await app.publish_many(
                "bench", [Tick(n=i, sent=now) for i in range(start, min(start + batch, n))]
            )
    else:
        per = n // publishers

        async def publisher(p: int) -> None:
            for i in range(per):
                await app.publish("bench", Tick(n=p * per + i, sent=time.time()))

        await asyncio.gather(*(publisher(p) for p in range(publishers)))
    await asyncio.wait_for(done.wait(), 600)
    seconds = time.perf_counter() - t0
    await app.stop()
    latencies.sort()
    return Result(
        backend=url.split("://")[0],
        mode=mode if mode != "single" else f"single×{publishers}",
        n=n,
        seconds=seconds,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
    )


async def main(args: argparse.Namespace) -> None:
    console = Console()
    if args.uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    tmp = Path(tempfile.mkdtemp(prefix="tidings-bench-"))
    raw_batched, raw_single, raw_select = raw_sqlite(tmp / "raw.db", args.n)
    results: list[Result] = []
    for backend in args.backends.split(","):
        for mode in ("batched", "single", "paced"):
            n = {"batched": args.n, "single": args.n_single, "paced": int(args.rate * 5)}[mode]
            url = "memory://" if backend == "memory" else f"sqlite:///{tmp}/{backend}-{mode}.db"
            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            results.append(await run_case(url, mode, n, args.batch, args.publishers, args.rate))
            if profiler:
                profiler.disable()
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
                console.print(f"[bold]profile {backend} {mode}[/]\n{out.getvalue()}")

    table = Table(
        title=f"tidings broker end-to-end ({platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores)"
    )
    for col in ("backend", "publish", "messages", "msg/s", "p50 ms", "p99 ms", "vs raw sqlite"):
        table.add_column(col, justify="right")
    for r in results:
        raw = raw_batched if r.mode == "batched" else raw_single
        ratio = (
            f"{r.rate / raw:.2f}× of {raw:,.0f}/s"
            if r.backend == "sqlite" and r.mode != "paced"
            else ""
        )
        table.add_row(
            r.backend,
            r.mode,
            f"{r.n:,}",
            f"{r.rate:,.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            ratio,
        )
    console.print(table)
    console.print(
        f"raw sqlite3 (WAL, synchronous=FULL): batched insert {raw_batched:,.0f} rows/s, "
        f"single-row commits {raw_single:,.0f}/s, select {raw_select:,.0f} rows/s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="messages in batched mode")
    parser.add_argument("--n-single", type=int, default=20_000, help="messages in single mode")
    parser.add_argument("--batch", type=int, default=1000, help="events per publish_many")
    parser.add_argument("--publishers", type=int, default=64, help="concurrent single publishers")
    parser.add_argument("--backends", default="memory,sqlite")
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="messages/s in paced mode (latency at light load, 5 s)",
    )
    parser.add_argument("--profile", action="store_true", help="print a cProfile summary per run")
    parser.add_argument("--no-uvloop", dest="uvloop", action="store_false")
    asyncio.run(main(parser.parse_args()))
