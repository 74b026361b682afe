"""SQLite event store recorder (``sqlite:///path.db``), the embedded default.

The stdlib ``sqlite3`` driver blocks, so each connection lives in its own thread: one
writer and one reader (WAL lets the reader see every commit without waiting for the
writer). Nothing blocking runs on the event loop.

Group commit: appends queue up while the writer thread commits; the next batch of queued
appends runs in one ``BEGIN IMMEDIATE`` transaction, each append inside its own SAVEPOINT,
so a failing append (wrong version, duplicate id) rolls back alone while the others commit
together with one fsync. ``synchronous=FULL`` (default): an append returns only after its
commit is durable, also across power loss; ``synchronous="NORMAL"`` is offered as an option
(WAL + NORMAL survives a process crash, not a power cut).

Gap-free order: SQLite has one writer at a time (``BEGIN IMMEDIATE`` takes the write lock,
also across processes), positions are ``max(position) + 1`` inside that transaction, so
positions are handed out in commit order and a reader never sees position n+1 before n.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from tidings.errors import (
    CorruptEvent,
    StoreError,
    StoreUnavailable,
    StreamDeleted,
    UnsupportedURL,
    WrongExpectedVersion,
)
from tidings.message.codec import encode_json
from tidings.store._common import (
    Append,
    GroupCommit,
    Notifier,
    category_of,
    decode_metadata,
    encode_metadata,
    expected_ok,
    follow,
    resolve_duplicates,
    validate_append,
    validate_stream,
)
from tidings.store.base import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Recorder,
    Snapshot,
    StreamInfo,
)

__all__ = ["SqliteRecorder", "create"]

T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS streams (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        category TEXT,
        version INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS events (
        position INTEGER PRIMARY KEY,
        stream_id INTEGER NOT NULL,
        version INTEGER NOT NULL,
        event_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        data BLOB NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        dataversion INTEGER NOT NULL DEFAULT 1,
        recorded_at REAL NOT NULL,
        UNIQUE (stream_id, version)
    )""",
    """CREATE TABLE IF NOT EXISTS snapshots (
        stream TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        data BLOB NOT NULL,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (stream, version)
    )""",
)
_EV = "e.event_id, e.version, e.position, e.type, e.data, e.metadata, e.dataversion, e.recorded_at"
_HEAD = "SELECT coalesce((SELECT position FROM events ORDER BY position DESC LIMIT 1), 0)"
_STREAM = "SELECT id, version, deleted FROM streams WHERE name = ?"
_NEW_STREAM = "INSERT INTO streams (name, category, version, updated_at) VALUES (?, ?, -1, ?)"
_SET_VERSION = "UPDATE streams SET version = ?, updated_at = ? WHERE id = ?"
_INSERT = (
    "INSERT INTO events (position, stream_id, version, event_id, type, data, metadata,"
    " dataversion, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_FIND_IDS = (
    "SELECT e.event_id, s.name, e.version, e.position FROM events e"
    " JOIN streams s ON s.id = e.stream_id"
    " WHERE e.event_id IN (SELECT value FROM json_each(?))"
)
_READ_FWD = (
    f"SELECT {_EV} FROM events e WHERE e.stream_id = ? AND e.version BETWEEN ? AND ?"
    " ORDER BY e.version LIMIT ?"
)
_READ_BWD = (
    f"SELECT {_EV} FROM events e WHERE e.stream_id = ? AND e.version BETWEEN ? AND ?"
    " ORDER BY e.version DESC LIMIT ?"
)
_READ_ALL = (
    f"SELECT {_EV}, s.name FROM events e JOIN streams s ON s.id = e.stream_id"
    " WHERE e.position >= ? ORDER BY e.position LIMIT ?"
)
_READ_CATEGORY = (
    f"SELECT {_EV}, s.name FROM events e JOIN streams s ON s.id = e.stream_id"
    " WHERE e.position >= ? AND s.category = ? ORDER BY e.position LIMIT ?"
)
_INFO = (
    "SELECT s.name, s.version, s.deleted, s.updated_at,"
    " (SELECT count(*) FROM events e WHERE e.stream_id = s.id) FROM streams s"
)
_INFO_ONE = _INFO + " WHERE s.name = ?"
_INFO_PREFIX = _INFO + " WHERE substr(s.name, 1, ?) = ? ORDER BY s.name LIMIT ?"
_DELETE = (
    "INSERT INTO streams (name, category, version, deleted, updated_at) VALUES (?, ?, -1, 1, ?)"
    " ON CONFLICT (name) DO UPDATE SET deleted = 1"
)
_SAVE_SNAPSHOT = (
    "INSERT OR REPLACE INTO snapshots (stream, version, type, data, recorded_at)"
    " VALUES (?, ?, ?, ?, ?)"
)
_LOAD_SNAPSHOT = (
    "SELECT stream, version, type, data, recorded_at FROM snapshots"
    " WHERE stream = ? AND version <= ? ORDER BY version DESC LIMIT 1"
)
_MAX_INT = 2**62


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    """sqlite3 failures other than our own checks become ``StoreUnavailable``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"sqlite: {exc}") from exc


def _to_event(row: tuple[Any, ...], stream: str) -> RecordedEvent:
    event_id, version, position, etype, data, metadata, dataversion, recorded_at = row[:8]
    if not isinstance(data, bytes) or not isinstance(etype, str) or not isinstance(event_id, str):
        raise CorruptEvent(stream, version, "row has a wrong column type (data, type or id)")
    if not isinstance(dataversion, int) or not isinstance(recorded_at, int | float):
        raise CorruptEvent(stream, version, "row has a wrong column type (dataversion, time)")
    return RecordedEvent(
        id=event_id,
        stream=stream,
        version=version,
        position=position,
        type=etype,
        data=data,
        metadata=decode_metadata(metadata, stream, version),
        dataversion=dataversion,
        recorded_at=float(recorded_at),
    )


class SqliteRecorder(Recorder):
    """Events in one SQLite file; see the module docstring for threads and durability."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        poll_interval: float = 0.5,
        busy_timeout: float = 10.0,
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, EXTRA or NORMAL, got {synchronous!r}")
        self.path = path
        self.synchronous = synchronous.upper()
        self.poll_interval = poll_interval
        self.busy_timeout = busy_timeout
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._wcon: sqlite3.Connection | None = None
        self._rcon: sqlite3.Connection | None = None
        self._commits = GroupCommit(self._write_batches, committed=self._notify)
        self._notifier = Notifier()

    # -- threads -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        con.execute("PRAGMA journal_mode=WAL")
        # Why: FULL syncs the WAL on every commit, so a returned append survives power loss.
        con.execute(f"PRAGMA synchronous={self.synchronous}")
        # Why: a 64 MB page cache keeps the indexes hot; checkpointing every 10k pages
        # instead of 1k moves the WAL-to-database copy (and its fsync) off most commits.
        con.execute("PRAGMA cache_size=-65536")
        con.execute("PRAGMA temp_store=MEMORY")
        con.execute("PRAGMA wal_autocheckpoint=10000")
        return con

    def _open_writer(self) -> None:
        con = self._wcon = self._connect()
        con.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA:
            con.execute(statement)
        con.execute("COMMIT")

    def _open_reader(self) -> None:
        self._rcon = self._connect()

    @staticmethod
    def _close_con(con: sqlite3.Connection | None) -> None:
        if con is not None:
            con.close()

    async def _run(self, executor: ThreadPoolExecutor | None, fn: Callable[[], T]) -> T:
        if executor is None:
            raise StoreUnavailable("the sqlite recorder is not started (call start())")
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    async def start(self) -> None:
        if self._writer is not None:
            return
        self._notifier = Notifier()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tidings-sqlite-w")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="tidings-sqlite-r")
        try:
            with _translate_errors():
                await self._run(self._writer, self._open_writer)
                await self._run(self._reader, self._open_reader)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        if writer is None or reader is None:
            return
        self._notifier.close()
        await self._commits.drain()
        wcon, rcon = self._wcon, self._rcon
        await self._run(writer, lambda: self._close_con(wcon))
        await self._run(reader, lambda: self._close_con(rcon))
        self._writer = self._reader = None
        self._wcon = self._rcon = None
        writer.shutdown(wait=True)
        reader.shutdown(wait=True)

    # -- append (group commit) -----------------------------------------------------------

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        validate_append(stream, events, expected_version)
        if self._writer is None:
            raise StoreUnavailable("the sqlite recorder is not started (call start())")
        return await self._commits.submit((stream, events, expected_version))

    def _notify(self) -> None:
        self._notifier.notify()

    async def _write_batches(self, batch: list[Append]) -> list[AppendResult | Exception]:
        return await self._run(self._writer, partial(self._write_batch, batch))

    def _write_batch(self, batch: list[Append]) -> list[AppendResult | Exception]:
        """Writer thread: every queued append in one transaction, one SAVEPOINT each."""
        con = self._wcon
        assert con is not None
        outcomes: list[AppendResult | Exception] = []
        with _translate_errors():
            con.execute("BEGIN IMMEDIATE")
            try:
                head: int = con.execute(_HEAD).fetchone()[0]
                now = time.time()
                for stream, events, expected in batch:
                    con.execute("SAVEPOINT one")
                    try:
                        result = self._append_one(con, stream, events, expected, head, now)
                    except sqlite3.IntegrityError:
                        # An event id is stored already: undo this append, then decide.
                        con.execute("ROLLBACK TO one")
                        con.execute("RELEASE one")
                        outcomes.append(self._duplicates(con, stream, events, expected, None))
                        continue
                    except StoreError as exc:  # our own checks: this append fails alone
                        con.execute("ROLLBACK TO one")
                        con.execute("RELEASE one")
                        outcomes.append(exc)
                        continue
                    con.execute("RELEASE one")
                    head = result.position
                    outcomes.append(result)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:  # a failed COMMIT may already have ended it
                    con.execute("ROLLBACK")
                raise
        return outcomes

    def _duplicates(
        self,
        con: sqlite3.Connection,
        stream: str,
        events: Sequence[NewEvent],
        expected: ExpectedVersion,
        conflict: WrongExpectedVersion | None,
    ) -> AppendResult | Exception:
        ids = encode_json([e.id for e in events]).decode()
        found = {r[0]: (r[1], r[2], r[3]) for r in con.execute(_FIND_IDS, (ids,))}
        if not found and conflict is not None:
            return conflict
        try:
            return resolve_duplicates(stream, events, expected, found)
        except Exception as exc:
            return exc

    def _append_one(
        self,
        con: sqlite3.Connection,
        stream: str,
        events: Sequence[NewEvent],
        expected: ExpectedVersion,
        head: int,
        now: float,
    ) -> AppendResult:
        row = con.execute(_STREAM, (stream,)).fetchone()
        if row is not None and row[2]:
            raise StreamDeleted(f"stream {stream!r} was deleted")
        current: int | None = None if row is None or row[1] < 0 else row[1]
        if not expected_ok(expected, current):
            outcome = self._duplicates(
                con, stream, events, expected, WrongExpectedVersion(stream, expected, current)
            )
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        if row is None:
            stream_id = con.execute(_NEW_STREAM, (stream, category_of(stream), now)).lastrowid
        else:
            stream_id = row[0]
        base = -1 if current is None else current
        con.executemany(
            _INSERT,
            [
                (
                    head + i,
                    stream_id,
                    base + i,
                    e.id,
                    e.type,
                    e.data,
                    encode_metadata(e.metadata) if e.metadata else "{}",
                    e.dataversion,
                    now,
                )
                for i, e in enumerate(events, 1)
            ],
        )
        version = base + len(events)
        con.execute(_SET_VERSION, (version, now, stream_id))
        return AppendResult(version, head + len(events))

    # -- reads (reader thread) -----------------------------------------------------------

    def _stream_id(self, con: sqlite3.Connection, stream: str) -> int | None:
        row = con.execute(_STREAM, (stream,)).fetchone()
        if row is None:
            return None
        if row[2]:
            raise StreamDeleted(f"stream {stream!r} was deleted")
        return int(row[0])

    async def read(
        self,
        stream: str,
        from_version: int = 0,
        to_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        validate_stream(stream)
        statement = _READ_BWD if backwards else _READ_FWD
        top = _MAX_INT if to_version is None else to_version
        count = -1 if limit is None else max(limit, 0)

        def work() -> list[RecordedEvent]:
            con = self._rcon
            assert con is not None
            with _translate_errors():
                stream_id = self._stream_id(con, stream)
                if stream_id is None:
                    return []
                rows = con.execute(statement, (stream_id, from_version, top, count)).fetchall()
            return [_to_event(r, stream) for r in rows]

        return await self._run(self._reader, work)

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, category: str | None = None
    ) -> list[RecordedEvent]:
        def work() -> list[RecordedEvent]:
            con = self._rcon
            assert con is not None
            with _translate_errors():
                if category is None:
                    rows = con.execute(_READ_ALL, (from_position, limit)).fetchall()
                else:
                    rows = con.execute(_READ_CATEGORY, (from_position, category, limit)).fetchall()
            return [_to_event(r, r[8]) for r in rows]

        return await self._run(self._reader, work)

    def subscribe(
        self, from_position: int = 0, *, category: str | None = None
    ) -> AsyncIterator[RecordedEvent]:
        return follow(self.read_all, self._notifier, from_position, category, self.poll_interval)

    async def _query(self, statement: str, params: tuple[Any, ...]) -> list[Any]:
        def work() -> list[Any]:
            con = self._rcon
            assert con is not None
            with _translate_errors():
                return con.execute(statement, params).fetchall()

        return await self._run(self._reader, work)

    async def head(self) -> int:
        rows = await self._query(_HEAD, ())
        return int(rows[0][0])

    @staticmethod
    def _info(row: tuple[Any, ...]) -> StreamInfo:
        name, version, deleted, updated_at, count = row
        return StreamInfo(name, version, count, bool(deleted), float(updated_at))

    async def stream_info(self, stream: str) -> StreamInfo | None:
        validate_stream(stream)
        rows = await self._query(_INFO_ONE, (stream,))
        return self._info(rows[0]) if rows else None

    async def streams(self, prefix: str = "", limit: int = 1000) -> list[StreamInfo]:
        rows = await self._query(_INFO_PREFIX, (len(prefix), prefix, limit))
        return [self._info(r) for r in rows]

    async def _write(self, statement: str, params: tuple[Any, ...]) -> None:
        def work() -> None:
            con = self._wcon
            assert con is not None
            with _translate_errors():
                con.execute(statement, params)

        await self._run(self._writer, work)

    async def delete_stream(self, stream: str) -> None:
        validate_stream(stream)
        await self._write(_DELETE, (stream, category_of(stream), time.time()))

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        validate_stream(snapshot.stream)
        s = snapshot
        await self._write(
            _SAVE_SNAPSHOT, (s.stream, s.version, s.type, s.data, s.recorded_at or time.time())
        )

    async def load_snapshot(self, stream: str, max_version: int | None = None) -> Snapshot | None:
        validate_stream(stream)

        def work() -> Snapshot | None:
            con = self._rcon
            assert con is not None
            with _translate_errors():
                self._stream_id(con, stream)
                top = _MAX_INT if max_version is None else max_version
                row = con.execute(_LOAD_SNAPSHOT, (stream, top)).fetchone()
            if row is None:
                return None
            return Snapshot(
                stream=row[0], version=row[1], type=row[2], data=row[3], recorded_at=row[4]
            )

        return await self._run(self._reader, work)

    async def read_with_snapshot(
        self, stream: str, to_version: int | None = None
    ) -> tuple[Snapshot | None, list[RecordedEvent]]:
        """Snapshot and the events after it, in one trip to the reader thread."""
        validate_stream(stream)
        top = _MAX_INT if to_version is None else to_version

        def work() -> tuple[Snapshot | None, list[RecordedEvent]]:
            con = self._rcon
            assert con is not None
            with _translate_errors():
                stream_id = self._stream_id(con, stream)
                row = con.execute(_LOAD_SNAPSHOT, (stream, top)).fetchone()
                start = 0 if row is None else row[1] + 1
                rows = (
                    []
                    if stream_id is None
                    else con.execute(_READ_FWD, (stream_id, start, top, -1)).fetchall()
                )
            snapshot = (
                None
                if row is None
                else Snapshot(
                    stream=row[0], version=row[1], type=row[2], data=row[3], recorded_at=row[4]
                )
            )
            return snapshot, [_to_event(r, stream) for r in rows]

        return await self._run(self._reader, work)


def path_of(url: str) -> str:
    """``sqlite:///./x.db`` → ``./x.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
        raise UnsupportedURL(
            f"{url!r} is not a SQLite URL; write sqlite:///relative.db or sqlite:////abs/path.db"
        )
    if parts.path[1:] == ":memory:":
        raise UnsupportedURL("an in-memory SQLite store cannot be shared by threads; use memory://")
    return unquote(parts.path[1:])


def create(url: str, **options: Any) -> SqliteRecorder:
    """Recorder for ``sqlite:///path.db`` (options: ``synchronous``, ``poll_interval``)."""
    return SqliteRecorder(path_of(url), **options)
