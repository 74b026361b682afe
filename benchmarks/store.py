"""Event store benchmark: tidings vs the ``eventsourcing`` library, same database, same run.

Workloads (events/s unless noted), each on SQLite and PostgreSQL:

a. ``append 1/tx``: AGGREGATES aggregates x 10 events, one event per save (transaction),
   one writer awaiting each save (serial). ``append 1/tx x16``: the same with 16
   concurrent writers (asyncio tasks for tidings, threads for eventsourcing).
b. ``append 100/tx``: aggregates of 100 events saved in one transaction each.
c. ``load 1000`` / ``load 1000 snap``: rebuild an aggregate of 1,000 events, without and
   with a snapshot at its last version (loads/s).
   ``store.append 100/tx``: tidings only, ``EventStore.append`` of 100 pre-built payloads
   (no aggregate), the figure for the "batched append" target.
d. ``read log``: read the whole global log in pages of 1,000 (raw records, no decoding).

Both sides work at the domain level: an aggregate class, its events, and the library's
repository (tidings ``Repository.save``/``load``; eventsourcing ``Application.save`` and
``repository.get``). Durability is the same: SQLite WAL with ``synchronous=FULL`` for both
(both libraries' defaults), PostgreSQL default commit settings.

Run::

    uv run python benchmarks/store.py                      # quick: 1,000 aggregates x 10
    uv run python benchmarks/store.py --full               # the issue's 10,000 x 10
    uv run python benchmarks/store.py --backends sqlite --aggregates 200
    uv run python benchmarks/store.py --pg-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate as EsAggregate
from eventsourcing.domain import event as es_event
from rich.console import Console
from rich.table import Table

from tidings.eventsourcing import Aggregate, Repository, applies
from tidings.message import Event, uuid7_many
from tidings.store import EventStore

# -- the same aggregate in both libraries --------------------------------------------------


class Started(Event):
    __type__ = "bench.Started"
    name: str


class Ticked(Event):
    __type__ = "bench.Ticked"
    n: int


class ClockState(msgspec.Struct):
    name: str = ""
    total: int = 0


class Clock(Aggregate[ClockState]):
    category = "clock"

    def initial_state(self) -> ClockState:
        return ClockState()

    @classmethod
    def start(cls, name: str) -> Clock:
        clock = cls(uuid.uuid4().hex)
        clock.record(Started(name=name))
        return clock

    def tick(self, n: int) -> None:
        self.record(Ticked(n=n))

    @applies(Started)
    def _started(self, event: Started) -> None:
        self.state.name = event.name

    @applies(Ticked)
    def _ticked(self, event: Ticked) -> None:
        self.state.total += event.n


class EsClock(EsAggregate):
    @es_event("Started")
    def __init__(self, name: str) -> None:
        self.name = name
        self.total = 0

    @es_event("Ticked")
    def tick(self, n: int) -> None:
        self.total += n


class Clocks(Application[uuid.UUID]):
    """The eventsourcing application (its name fixes the table names)."""


# -- results -------------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    workload: str
    unit: str
    tidings: float
    eventsourcing: float

    @property
    def ratio(self) -> float:
        return self.tidings / self.eventsourcing if self.eventsourcing else float("inf")


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


@dataclass
class Scale:
    aggregates: int
    events_per_aggregate: int
    batch_events: int
    batch_size: int
    load_events: int
    load_repeats: int
    concurrency: int


# -- tidings side --------------------------------------------------------------------------


async def tidings_suite(url: str, scale: Scale, **options: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    async with EventStore(url, **options) as store:
        repo = Repository(store, Clock)

        async def one_per_tx(count: int) -> None:
            for i in range(count):
                clock = Clock.start(f"c{i}")
                await repo.save(clock)
                for n in range(scale.events_per_aggregate - 1):
                    clock.tick(n)
                    await repo.save(clock)

        n_events = scale.aggregates * scale.events_per_aggregate
        t0 = time.perf_counter()
        await one_per_tx(scale.aggregates)
        out["append 1/tx"] = rate(n_events, time.perf_counter() - t0)

        per_writer = max(1, scale.aggregates // scale.concurrency)
        t0 = time.perf_counter()
        await asyncio.gather(*(one_per_tx(per_writer) for _ in range(scale.concurrency)))
        elapsed = time.perf_counter() - t0
        out[f"append 1/tx x{scale.concurrency}"] = rate(
            per_writer * scale.concurrency * scale.events_per_aggregate, elapsed
        )

        t0 = time.perf_counter()
        for i in range(scale.batch_events // scale.batch_size):
            clock = Clock.start(f"b{i}")
            for n in range(scale.batch_size - 1):
                clock.tick(n)
            await repo.save(clock)
        out[f"append {scale.batch_size}/tx"] = rate(
            scale.batch_events // scale.batch_size * scale.batch_size, time.perf_counter() - t0
        )

        # The store alone (no aggregate): pre-built payloads, one append of 100 per stream.
        payloads = [Ticked(n=n) for n in range(scale.batch_size)]
        t0 = time.perf_counter()
        for i in range(scale.batch_events // scale.batch_size):
            await store.append(f"raw-{i}", payloads)
        out[f"store.append {scale.batch_size}/tx"] = rate(
            scale.batch_events // scale.batch_size * scale.batch_size, time.perf_counter() - t0
        )

        snap_repo = Repository(store, Clock, snapshot_every=scale.load_events)
        big = Clock.start("big")
        for n in range(scale.load_events - 1):
            big.tick(n)
            if (n + 2) % 100 == 0:
                await snap_repo.save(big)  # 100 per save; a snapshot at the last version
        await snap_repo.save(big)
        assert (await store.load_snapshot(big.stream)) is not None
        t0 = time.perf_counter()
        for _ in range(scale.load_repeats):
            loaded = await repo.load(big.id)
        out["load 1000"] = rate(scale.load_repeats, time.perf_counter() - t0)
        assert loaded.state == big.state
        t0 = time.perf_counter()
        for _ in range(scale.load_repeats):
            loaded = await snap_repo.load(big.id)
        out["load 1000 snap"] = rate(scale.load_repeats, time.perf_counter() - t0)
        assert loaded.state == big.state

        t0 = time.perf_counter()
        position, count = 0, 0
        while page := await store.read_all(position, 1000):
            count += len(page)
            position = page[-1].position + 1
        out["read log"] = rate(count, time.perf_counter() - t0)
    return out


# -- eventsourcing side --------------------------------------------------------------------


def es_suite(env: dict[str, str], scale: Scale) -> dict[str, float]:
    out: dict[str, float] = {}
    app = Clocks(env=env)
    snap_app = Clocks(env={**env, "IS_SNAPSHOTTING_ENABLED": "y"})
    try:

        def one_per_tx(count: int) -> None:
            for i in range(count):
                clock = EsClock(f"c{i}")
                app.save(clock)
                for n in range(scale.events_per_aggregate - 1):
                    clock.tick(n)
                    app.save(clock)

        n_events = scale.aggregates * scale.events_per_aggregate
        t0 = time.perf_counter()
        one_per_tx(scale.aggregates)
        out["append 1/tx"] = rate(n_events, time.perf_counter() - t0)

        per_writer = max(1, scale.aggregates // scale.concurrency)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(scale.concurrency) as pool:
            for f in [pool.submit(one_per_tx, per_writer) for _ in range(scale.concurrency)]:
                f.result()
        elapsed = time.perf_counter() - t0
        out[f"append 1/tx x{scale.concurrency}"] = rate(
            per_writer * scale.concurrency * scale.events_per_aggregate, elapsed
        )

        t0 = time.perf_counter()
        for i in range(scale.batch_events // scale.batch_size):
            clock = EsClock(f"b{i}")
            for n in range(scale.batch_size - 1):
                clock.tick(n)
            app.save(clock)
        out[f"append {scale.batch_size}/tx"] = rate(
            scale.batch_events // scale.batch_size * scale.batch_size, time.perf_counter() - t0
        )

        big = EsClock("big")
        for n in range(scale.load_events - 1):
            big.tick(n)
            if (n + 2) % 100 == 0:
                app.save(big)
        app.save(big)
        t0 = time.perf_counter()
        for _ in range(scale.load_repeats):
            loaded = app.repository.get(big.id)
        out["load 1000"] = rate(scale.load_repeats, time.perf_counter() - t0)
        assert loaded.total == big.total
        snap_app.take_snapshot(big.id)
        t0 = time.perf_counter()
        for _ in range(scale.load_repeats):
            loaded = snap_app.repository.get(big.id)
        out["load 1000 snap"] = rate(scale.load_repeats, time.perf_counter() - t0)
        assert loaded.total == big.total

        recorder = app.recorder
        t0 = time.perf_counter()
        start, count = 1, 0
        while page := recorder.select_notifications(start, 1000):  # type: ignore[attr-defined]
            count += len(page)
            start = page[-1].id + 1
        out["read log"] = rate(count, time.perf_counter() - t0)
    finally:
        app.close()
        snap_app.close()
    return out


# -- backends ------------------------------------------------------------------------------


@contextmanager
def sqlite_backend() -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
    folder = tempfile.mkdtemp(prefix="tidings-bench-")
    try:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": os.path.join(folder, "eventsourcing.db"),
            "SQLITE_LOCK_TIMEOUT": "30",
        }
        yield f"sqlite:///{os.path.join(folder, 'tidings.db')}", env, {}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def postgres_backend(url: str) -> Iterator[tuple[str, dict[str, str], dict[str, Any]]]:
    """Fresh schemas for both libraries in the same database, dropped afterwards."""
    import psycopg

    parts = urlsplit(url)
    suffix = uuid.uuid4().hex[:8]
    es_schema, td_schema = f"bench_es_{suffix}", f"bench_td_{suffix}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {es_schema}")
        con.execute(f"CREATE SCHEMA {td_schema}")
    try:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.lstrip("/") or "postgres",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": parts.username or "postgres",
            "POSTGRES_PASSWORD": parts.password or "",
            "POSTGRES_SCHEMA": es_schema,
            "POSTGRES_POOL_SIZE": "16",
        }
        yield url, env, {"schema": td_schema}
    finally:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f"DROP SCHEMA {es_schema} CASCADE")
            con.execute(f"DROP SCHEMA {td_schema} CASCADE")


def run_backend(
    name: str,
    backend: Callable[[], Any],
    scale: Scale,
    console: Console,
) -> list[Result]:
    with backend() as (url, env, options):
        console.print(f"[bold]{name}[/]: tidings ...")
        ours = asyncio.run(tidings_suite(url, scale, **options))
        console.print(f"[bold]{name}[/]: eventsourcing ...")
        theirs = es_suite(env, scale)
    units = {"load 1000": "loads/s", "load 1000 snap": "loads/s"}
    return [Result(name, w, units.get(w, "events/s"), ours[w], theirs.get(w, 0.0)) for w in ours]


def raw_sqlite_batches(events: int, batch: int) -> float:
    """The physical limit: plain sqlite3, the same table shape, ``batch`` rows per
    ``synchronous=FULL`` commit, one caller, no encoding: rows/s."""
    with tempfile.TemporaryDirectory(prefix="tidings-raw-") as tmp:
        con = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute(
            "CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id INTEGER NOT NULL,"
            " version INTEGER NOT NULL, event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
            " data BLOB NOT NULL, metadata TEXT NOT NULL, dataversion INTEGER NOT NULL,"
            " recorded_at REAL NOT NULL, UNIQUE (stream_id, version))"
        )
        ids = uuid7_many(events)
        rows = [
            (p + 1, p // batch, p % batch, ids[p], "bench.Tick", b'{"n":1}', "{}", 1, 0.0)
            for p in range(events)
        ]
        started = time.perf_counter()
        for start in range(0, events, batch):
            con.execute("BEGIN")
            con.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows[start : start + batch],
            )
            con.execute("COMMIT")
        elapsed = time.perf_counter() - started
        con.close()
    return rate(events, elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TIDINGS_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--aggregates", type=int, default=1000, help="workload a (default 1000)")
    parser.add_argument("--full", action="store_true", help="10,000 aggregates x 10 events")
    parser.add_argument("--batch-events", type=int, default=20_000, help="workload b total")
    parser.add_argument("--load-repeats", type=int, default=200, help="workload c loads")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    scale = Scale(
        aggregates=10_000 if args.full else args.aggregates,
        events_per_aggregate=10,
        batch_events=100_000 if args.full else args.batch_events,
        batch_size=100,
        load_events=1000,
        load_repeats=args.load_repeats,
        concurrency=args.concurrency,
    )
    console = Console()
    results: list[Result] = []
    for name in args.backends.split(","):
        if name == "sqlite":
            results += run_backend("sqlite", sqlite_backend, scale, console)
        elif name in ("postgresql", "postgres"):
            results += run_backend(
                "postgresql", lambda: postgres_backend(args.pg_url), scale, console
            )
        else:
            parser.error(f"unknown backend {name!r}")

    table = Table(
        title=f"tidings vs eventsourcing: {scale.aggregates:,} aggregates x "
        f"{scale.events_per_aggregate}, batches of {scale.batch_size} "
        f"({scale.batch_events:,} events), load {scale.load_events} x {scale.load_repeats}"
    )
    for column in ("backend", "workload", "unit", "tidings", "eventsourcing", "ratio"):
        table.add_column(column, justify="left" if column in ("backend", "workload") else "right")
    for r in results:
        table.add_row(
            r.backend,
            r.workload,
            r.unit,
            f"{r.tidings:,.0f}",
            f"{r.eventsourcing:,.0f}" if r.eventsourcing else "-",
            f"{r.ratio:.2f}x" if r.eventsourcing else "-",
        )
    console.print(table)
    if "sqlite" in args.backends:
        raw = raw_sqlite_batches(scale.batch_events, scale.batch_size)
        console.print(
            f"raw sqlite3, same table, {scale.batch_size} rows per synchronous=FULL commit, "
            f"one caller, no encoding: {raw:,.0f} rows/s (the physical limit of append "
            f"{scale.batch_size}/tx on this disk)"
        )
    console.print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"command: {' '.join(['python', *sys.argv])}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
