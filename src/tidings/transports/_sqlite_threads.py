"""The SQLite transport's two threads: the group-committing writer and the reader.

No sqlite call runs on the event loop. The writer thread owns the only write connection;
callers queue :class:`Op` objects and await a future that the writer settles, a whole batch
at a time, through one ``loop.call_soon_threadsafe``. The reader runs lock-free queries
(idle polls, browse, stats) on a second connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tidings.errors import BrokerUnavailable
from tidings.transports import _sqlite_sql as sql

__all__ = ["Op", "Reader", "Result", "Writer"]

T = TypeVar("T")


class Op:
    """One queued write; ``topics`` are the topics whose fetches to wake once it committed.

    ``kind`` and ``args`` → result: ``group`` (topic, name, start) → group id; ``publish``
    [MessageRow]; ``decide`` [(``"ack"`` | ``"nack"``, (group id, lease, [delay,] seq),
    future)], settled per item; ``unlease`` (group id, lease, [seq]); ``purge`` (topic,
    name, ids or None) → count; ``drop_group`` (topic, name) → existed; ``lease`` (group
    id, ordered, limit, seconds, lease) → [(seq, attempt, message data)].
    """

    __slots__ = ("args", "future", "kind", "topics")

    def __init__(
        self,
        kind: str,
        args: Any,
        future: asyncio.Future[Any] | None,
        topics: Collection[str] = (),
    ) -> None:
        self.kind = kind
        self.args = args
        self.future = future
        self.topics = topics


Result = tuple[Op, Any, BaseException | None]
# Ops whose commit must survive power loss before the caller hears back. The others (acks,
# nacks, leases) commit without an fsync of their own: a crash of the process loses
# nothing, and on power loss the most they lose is an ack or a lease, which the contract
# already allows for (at-least-once delivery); the next durable commit fsyncs them too.
_DURABLE = frozenset({"publish", "group", "purge", "drop_group"})
_STOP = Op("stop", None, None)
_MAX_BATCH = 4096


class Writer:
    """The thread that owns the write connection and group-commits queued ops.

    It takes everything queued (up to ``_MAX_BATCH`` ops), runs it in one ``BEGIN
    IMMEDIATE`` transaction, so one fsync serves every caller, then hands the results to
    ``on_done`` on the loop. Within a batch every op is concurrent with every other (a
    caller that depends on an op's outcome waited for its commit), so the writer groups
    them by kind and runs leases last, after the publishes, acks and nacks they may see.
    """

    def __init__(
        self,
        path: str,
        busy_timeout: float,
        retention: float,
        gc_interval: float,
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[list[Result]], None],
    ) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._retention = retention
        self._gc_interval = gc_interval
        self.loop = loop
        self._on_done = on_done
        self._queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._gc_cursor = 0
        self.stopping = False
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tidings-sqlite-writer", daemon=True)

    def start(self) -> None:
        """Open the connection and create the schema (blocking: call it from a thread)."""
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error

    def submit(self, op: Op) -> None:
        self._queue.put(op)

    def stop(self) -> None:
        """Commit what is queued (leases excepted), close the connection (blocking)."""
        self.stopping = True
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        try:
            self._conn = sql.connect(self.path, self._busy_timeout)
            with sql._translate_errors(self.path):
                sql.create_schema(self._conn, self.path)
        except BaseException as exc:
            self._start_error = exc
            if self._conn is not None:
                self._conn.close()
            self._ready.set()
            return
        self._ready.set()
        next_gc = time.monotonic() + self._gc_interval
        try:
            while True:
                batch = []
                with contextlib.suppress(queue.Empty):
                    batch.append(self._queue.get(timeout=max(next_gc - time.monotonic(), 0)))
                    while len(batch) < _MAX_BATCH:
                        batch.append(self._queue.get_nowait())
                stop = _STOP in batch
                ops = [op for op in batch if op is not _STOP]
                if ops:
                    self._execute(ops)
                if time.monotonic() >= next_gc:
                    more = self._collect_garbage()
                    next_gc = time.monotonic() + (0.0 if more else self._gc_interval)
                if stop:
                    return
        finally:
            self._conn.close()

    def _execute(self, ops: list[Op]) -> None:
        conn = self._conn
        assert conn is not None
        try:
            with sql._translate_errors(self.path):
                sql.set_durable(conn, any(op.kind in _DURABLE for op in ops))
                with sql.transaction(conn):
                    results = self._apply(conn, ops, time.time())
        except Exception as exc:
            if len(ops) > 1 and not isinstance(exc, BrokerUnavailable):
                # One op with bad input (a topic with a lone surrogate, say) must not fail
                # the callers it was batched with: retry each in its own transaction.
                for op in ops:
                    self._execute([op])
                return
            results = [(op, None, exc) for op in ops]
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self.loop.call_soon_threadsafe(self._on_done, results)

    def _apply(self, conn: sqlite3.Connection, ops: list[Op], now: float) -> list[Result]:
        by_kind: dict[str, list[Op]] = defaultdict(list)
        for op in ops:
            by_kind[op.kind].append(op)
        results: list[Result] = []
        for op in by_kind.pop("group", ()):
            topic, name, start = op.args
            results.append((op, sql.do_group(conn, topic, name, start, now), None))
        if publishes := by_kind.pop("publish", None):
            sql.do_publish(conn, [row for op in publishes for row in op.args])
            results.extend((op, None, None) for op in publishes)
        # Acks and nacks come coalesced, one "decide" op per loop iteration (see
        # SqliteTransport._decide); the ones of one lease, i.e. one fetch, run as one statement.
        acks: dict[tuple[int, str], list[int]] = defaultdict(list)
        nacks: dict[tuple[int, str, float], list[int]] = defaultdict(list)
        for op in by_kind.pop("decide", ()):
            for kind, (group_id, lease, *delay, seq), _ in op.args:
                if kind == "ack":
                    acks[(group_id, lease)].append(seq)
                else:
                    nacks[(group_id, lease, delay[0])].append(seq)
            results.append((op, None, None))
        for (group_id, lease), seqs in acks.items():
            sql.do_ack(conn, group_id, lease, seqs, now)
        for (group_id, lease, delay), seqs in nacks.items():
            sql.do_nack(conn, group_id, lease, seqs, now + delay, now)
        for op in by_kind.pop("unlease", ()):
            group_id, lease, seqs = op.args
            sql.do_unlease(conn, group_id, lease, seqs, now)
            results.append((op, None, None))
        for op in by_kind.pop("purge", ()):
            results.append((op, sql.do_purge(conn, *op.args), None))
        for op in by_kind.pop("drop_group", ()):
            results.append((op, sql.do_drop_group(conn, *op.args), None))
        for op in by_kind.pop("lease", ()):
            if self.stopping or (op.future is not None and op.future.done()):
                results.append((op, [], None))  # closing, or the fetch was cancelled
                continue
            group_id, ordered, limit, lease_for, lease = op.args
            rows = sql.do_lease(conn, group_id, ordered, limit, now + lease_for, lease, now)
            results.append((op, rows, None))
        assert not by_kind, f"unknown op kinds {sorted(by_kind)}"
        return results

    def _collect_garbage(self) -> bool:
        """Delete message rows no group needs; True when more are deletable right away."""
        conn = self._conn
        assert conn is not None
        try:
            with sql._translate_errors(self.path), sql.transaction(conn):
                cutoff = time.time() - self._retention
                deleted, self._gc_cursor = sql.do_gc(conn, cutoff, self._gc_cursor)
        except Exception:  # locked by another process, say: try at the next interval
            return False
        return deleted >= sql.GC_BATCH


class Reader:
    """Lock-free reads on a second connection, in one thread of its own."""

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tidings-sqlite-reader")
        self._conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._conn is None:
            self._conn = sql.connect(self.path, self._busy_timeout)
        with sql._translate_errors(self.path):
            return fn(self._conn, *args)

    def close(self) -> None:
        """Close the connection and stop the thread (blocking)."""
        self._executor.submit(self._close_conn).result()
        self._executor.shutdown(wait=True)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
