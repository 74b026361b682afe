"""PostgreSQL event store recorder (``postgresql://user@host/db``), on an asyncpg pool.

One round trip per append: the function ``tidings_append`` (created by :meth:`start`)
locks, checks the expected version and the event ids, inserts every event with one
``INSERT … SELECT FROM unnest(…)``, bumps the stream row and sends a NOTIFY, all inside
the statement's own transaction. Group commit: appends that arrive while a call is in
flight are queued and sent together in the next call (each with its own checks and
outcome, one transaction and one fsync for all), at most ``max_inflight`` calls at once.

Gap-free global order: ``LOCK TABLE tidings_events IN EXCLUSIVE MODE`` per append
(the eventsourcing library's technique, see ANCHORS.md). Why this one:

* With a sequence, positions are handed out at ``nextval`` time but become visible at
  commit time; a transaction that took position 7 can commit after the one that took 8,
  and a reader that saw 8 and moved its checkpoint past 7 silently skips 7 (the Marten /
  Eventuous bug). The EXCLUSIVE lock lets one appender at a time hold the table from
  taking its position to its commit. PostgreSQL makes a commit visible before it releases
  the transaction's locks, so when appender B gets the lock, A's events are already
  visible (or rolled back): commit order = position order, and ``read_all`` can never
  see position n+1 while n is still in doubt. Positions are ``max(position) + 1`` taken
  under the lock, so they are dense too (no sequence, no holes from rollbacks).
* EXCLUSIVE mode conflicts with writers only: ``SELECT`` (ACCESS SHARE) never waits, so
  readers and subscriptions run freely while appends serialise.
* The alternatives cost more for what we need: the xid horizon (``pg_snapshot_xmin``)
  orders by (xid, position), not by position, and one long transaction stalls every
  reader; Marten's high-water mark needs a liveness proof before skipping a gap and a
  record of every skip; a per-category advisory lock (Message DB) orders only within a
  category. The price of the table lock is that appends serialise on commit latency
  (~1.5-3k appends/s with fsync on a small box); batching events per append and
  PostgreSQL's own group commit of concurrent transactions do not help it, so a
  write-heavy deployment should batch events per append.

The same lock is taken by ``delete_stream`` so a tombstone and an append never race.
Subscriptions catch up with ``read_all`` pages, then wait for the NOTIFY sent by each
append (``LISTEN`` on a dedicated connection), with a fallback poll every
``poll_interval`` seconds in case a notification is lost; a dropped listener connection is
re-made in the background (with backoff), then every subscription re-reads once.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tidings.config import require
from tidings.errors import (
    StoreError,
    StoreUnavailable,
    StreamDeleted,
    UnsupportedURL,
    WrongExpectedVersion,
)
from tidings.store._common import (
    Append,
    GroupCommit,
    Notifier,
    category_of,
    decode_metadata,
    encode_metadata,
    follow,
    resolve_duplicates,
    validate_append,
    validate_stream,
)
from tidings.store.base import (
    ANY,
    EXISTS,
    NO_STREAM,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Recorder,
    Snapshot,
    StreamInfo,
)

__all__ = ["PostgresRecorder", "create"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
_MAX_BIGINT = 2**63 - 1
_KEY = "sha256(convert_to($1, 'UTF8'))"
"""Streams are found by the SHA-256 of their name, so any name up to the limit fits a
btree entry (a 1,000-character unicode name is up to 4,000 bytes, over btree's ~2,700)."""

_OK, _CONFLICT, _DELETED, _DUPLICATE = 0, 1, 2, 3


class _Sql:
    """Every statement of one schema, built once; only the validated schema is spliced."""

    def __init__(self, schema: str) -> None:
        s = f'"{schema}"'
        self.channel = f"tidings_events_{schema}"
        self.ddl = (
            f"CREATE SCHEMA IF NOT EXISTS {s}",
            f"""CREATE TABLE IF NOT EXISTS {s}.tidings_streams (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                key bytea NOT NULL UNIQUE,
                name text NOT NULL,
                category text,
                version bigint NOT NULL,
                deleted boolean NOT NULL DEFAULT false,
                updated_at double precision NOT NULL DEFAULT 0)""",
            f"""CREATE TABLE IF NOT EXISTS {s}.tidings_events (
                position bigint PRIMARY KEY,
                stream_id bigint NOT NULL,
                version bigint NOT NULL,
                event_id text NOT NULL,
                type text NOT NULL,
                data bytea NOT NULL,
                metadata text NOT NULL DEFAULT '{{}}',
                dataversion integer NOT NULL DEFAULT 1,
                recorded_at double precision NOT NULL,
                UNIQUE (stream_id, version))""",
            f"""CREATE UNIQUE INDEX IF NOT EXISTS tidings_events_event_id
                ON {s}.tidings_events (event_id)""",
            f"""CREATE TABLE IF NOT EXISTS {s}.tidings_snapshots (
                key bytea NOT NULL,
                version bigint NOT NULL,
                stream text NOT NULL,
                type text NOT NULL,
                data bytea NOT NULL,
                recorded_at double precision NOT NULL,
                PRIMARY KEY (key, version))""",
            f"""CREATE OR REPLACE FUNCTION {s}.tidings_append(
                p_streams text[], p_categories text[], p_kinds smallint[], p_expected bigint[],
                p_counts integer[], p_ids text[], p_types text[], p_data bytea[],
                p_meta text[], p_dv integer[])
            RETURNS TABLE (o_status smallint, o_version bigint, o_pos bigint)
            LANGUAGE plpgsql
            -- Why: a plan cached while the tables are new and small (no statistics yet)
            -- would keep scanning the whole log for every id check; every lookup here is
            -- an index probe.
            SET enable_seqscan = off
            AS $fn$
            DECLARE
                v_key bytea;
                v_id bigint;
                v_current bigint;
                v_deleted boolean;
                v_head bigint;
                v_now double precision;
                v_n integer;
                v_off integer := 0;
                v_kind smallint;
                v_wrote boolean := false;
            BEGIN
                -- Gap-free order: see the module docstring of tidings.store.postgres.
                LOCK TABLE {s}.tidings_events IN EXCLUSIVE MODE;
                v_head := coalesce((SELECT e.position FROM {s}.tidings_events e
                    ORDER BY e.position DESC LIMIT 1), 0);
                v_now := extract(epoch FROM clock_timestamp());
                FOR i IN 1 .. cardinality(p_streams) LOOP
                    v_n := p_counts[i];
                    v_kind := p_kinds[i];
                    v_key := sha256(convert_to(p_streams[i], 'UTF8'));
                    v_id := NULL;
                    v_current := NULL;
                    v_deleted := false;
                    SELECT st.id, st.version, st.deleted INTO v_id, v_current, v_deleted
                        FROM {s}.tidings_streams st WHERE st.key = v_key;
                    IF v_current < 0 THEN v_current := NULL; END IF;
                    IF v_deleted THEN
                        o_status := {_DELETED}; o_version := v_current; o_pos := 0;
                    ELSIF EXISTS (SELECT 1 FROM {s}.tidings_events e
                            WHERE e.event_id = ANY(p_ids[v_off + 1 : v_off + v_n])) THEN
                        o_status := {_DUPLICATE}; o_version := v_current; o_pos := 0;
                    -- Expected version checked before a position is taken (EventStoreDB).
                    ELSIF NOT (v_kind = 0
                            OR (v_kind = 1 AND v_current IS NULL)
                            OR (v_kind = 2 AND v_current IS NOT NULL)
                            OR (v_kind = 3 AND v_current IS NOT NULL
                                AND v_current = p_expected[i])) THEN
                        o_status := {_CONFLICT}; o_version := v_current; o_pos := 0;
                    ELSE
                        IF v_id IS NULL THEN
                            INSERT INTO {s}.tidings_streams
                                    (key, name, category, version, updated_at)
                                VALUES (v_key, p_streams[i], p_categories[i], -1, v_now)
                                RETURNING id INTO v_id;
                        END IF;
                        v_current := coalesce(v_current, -1);
                        INSERT INTO {s}.tidings_events (position, stream_id, version, event_id,
                                type, data, metadata, dataversion, recorded_at)
                            SELECT v_head + u.ord, v_id, v_current + u.ord, u.id, u.type,
                                u.data, u.meta, u.dv, v_now
                            FROM unnest(p_ids[v_off + 1 : v_off + v_n],
                                    p_types[v_off + 1 : v_off + v_n],
                                    p_data[v_off + 1 : v_off + v_n],
                                    p_meta[v_off + 1 : v_off + v_n],
                                    p_dv[v_off + 1 : v_off + v_n])
                                WITH ORDINALITY AS u(id, type, data, meta, dv, ord);
                        UPDATE {s}.tidings_streams SET version = v_current + v_n,
                            updated_at = v_now WHERE id = v_id;
                        v_head := v_head + v_n;
                        v_wrote := true;
                        o_status := {_OK}; o_version := v_current + v_n; o_pos := v_head;
                    END IF;
                    RETURN NEXT;
                    v_off := v_off + v_n;
                END LOOP;
                IF v_wrote THEN
                    PERFORM pg_notify('{self.channel}', v_head::text);
                END IF;
            END
            $fn$""",
        )
        self.init_lock = "SELECT pg_advisory_xact_lock(hashtext($1))"
        self.append = (
            "SELECT o_status, o_version, o_pos FROM "
            f"{s}.tidings_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
        ev = (
            "e.event_id, e.version, e.position, e.type, e.data, e.metadata, e.dataversion,"
            " e.recorded_at"
        )
        self.find_ids = (
            f"SELECT e.event_id, st.name, e.version, e.position FROM {s}.tidings_events e"
            f" JOIN {s}.tidings_streams st ON st.id = e.stream_id WHERE e.event_id = ANY($1)"
        )
        read = (
            f"SELECT st.deleted, {ev} FROM {s}.tidings_streams st"
            f" LEFT JOIN LATERAL (SELECT * FROM {s}.tidings_events e0"
            " WHERE e0.stream_id = st.id AND e0.version BETWEEN $2 AND $3"
            " ORDER BY e0.version {order} LIMIT $4) e ON true"
            f" WHERE st.key = {_KEY} ORDER BY e.version {{order}}"
        )
        self.read_fwd = read.format(order="ASC")
        self.read_bwd = read.format(order="DESC")
        self.read_all = (
            f"SELECT {ev}, st.name FROM {s}.tidings_events e"
            f" JOIN {s}.tidings_streams st ON st.id = e.stream_id"
            " WHERE e.position >= $1 ORDER BY e.position LIMIT $2"
        )
        self.read_category = (
            f"SELECT {ev}, st.name FROM {s}.tidings_events e"
            f" JOIN {s}.tidings_streams st ON st.id = e.stream_id"
            " WHERE e.position >= $1 AND st.category = $3 ORDER BY e.position LIMIT $2"
        )
        self.head = (
            f"SELECT coalesce((SELECT position FROM {s}.tidings_events"
            " ORDER BY position DESC LIMIT 1), 0)"
        )
        info = (
            "SELECT st.name, st.version, st.deleted, st.updated_at,"
            f" (SELECT count(*) FROM {s}.tidings_events e WHERE e.stream_id = st.id)"
            f" FROM {s}.tidings_streams st"
        )
        self.info_one = f"{info} WHERE st.key = {_KEY}"
        self.info_prefix = f"{info} WHERE starts_with(st.name, $1) ORDER BY st.name LIMIT $2"
        self.lock = f"LOCK TABLE {s}.tidings_events IN EXCLUSIVE MODE"
        self.delete = (
            f"INSERT INTO {s}.tidings_streams (key, name, category, version, deleted, updated_at)"
            f" VALUES ({_KEY}, $1, $2, -1, true, extract(epoch FROM clock_timestamp()))"
            " ON CONFLICT (key) DO UPDATE SET deleted = true"
        )
        self.save_snapshot = (
            f"INSERT INTO {s}.tidings_snapshots (key, version, stream, type, data, recorded_at)"
            f" VALUES ({_KEY}, $2, $1, $3, $4, $5) ON CONFLICT (key, version)"
            " DO UPDATE SET type = excluded.type, data = excluded.data,"
            " recorded_at = excluded.recorded_at"
        )
        self.load_snapshot = (
            f"SELECT (SELECT st.deleted FROM {s}.tidings_streams st WHERE st.key = q.k),"
            " sn.stream, sn.version, sn.type, sn.data, sn.recorded_at"
            f" FROM (SELECT {_KEY} AS k) q LEFT JOIN LATERAL (SELECT * FROM {s}.tidings_snapshots"
            " x WHERE x.key = q.k AND x.version <= $2 ORDER BY x.version DESC LIMIT 1) sn ON true"
        )


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    """asyncpg and socket failures become tidings errors (``raise … from``)."""
    asyncpg = require("asyncpg", "postgres")
    try:
        yield
    except StoreError:
        raise
    except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        raise StoreUnavailable(f"postgresql: {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"postgresql: {exc}") from exc


def _kind(expected: ExpectedVersion) -> tuple[int, int]:
    if expected is ANY:
        return 0, 0
    if expected is NO_STREAM:
        return 1, 0
    if expected is EXISTS:
        return 2, 0
    assert isinstance(expected, int)
    return 3, expected


def _to_event(row: Any, stream: str) -> RecordedEvent:
    version = row["version"]
    return RecordedEvent(
        id=row["event_id"],
        stream=stream,
        version=version,
        position=row["position"],
        type=row["type"],
        data=row["data"],
        metadata=decode_metadata(row["metadata"], stream, version),
        dataversion=row["dataversion"],
        recorded_at=row["recorded_at"],
    )


class PostgresRecorder(Recorder):
    """Events in three tables of one schema (default ``public``): ``tidings_streams``,
    ``tidings_events``, ``tidings_snapshots``; see the module docstring."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        pool_size: int = 20,
        poll_interval: float = 1.0,
        connect_timeout: float = 10.0,
        max_inflight: int = 2,
        max_batch: int = 500,
    ) -> None:
        if not _IDENT.match(schema):
            raise ValueError(f"schema must be a plain identifier of ≤ 40 characters: {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self.pool_size = pool_size
        self.poll_interval = poll_interval
        self.connect_timeout = connect_timeout
        self._commits = GroupCommit(
            self._append_many, max_inflight=min(max_inflight, pool_size), max_batch=max_batch
        )
        self.sql = _Sql(schema)
        self.pool: Any = None
        self._listener: Any = None
        self._relisten: asyncio.Task[None] | None = None
        self._notifier = Notifier()

    def _on_notify(self, *_: object) -> None:
        self._notifier.notify()

    async def _listen(self) -> Any:
        """A dedicated connection LISTENing on the store's channel (re-made if it drops)."""
        asyncpg = require("asyncpg", "postgres")
        listener = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        try:
            await listener.add_listener(self.sql.channel, self._on_notify)
            listener.add_termination_listener(self._on_listener_lost)
        except BaseException:
            await listener.close()
            raise
        return listener

    def _on_listener_lost(self, *_: object) -> None:
        # Our own close() clears the pool first, so only an unexpected loss reconnects.
        if self.pool is not None and (self._relisten is None or self._relisten.done()):
            self._relisten = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        delay = 0.2
        while self.pool is not None:
            try:
                listener = await self._listen()
            except Exception:  # still down: subscriptions keep polling meanwhile
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if self.pool is None:
                await listener.close()
                return
            self._listener = listener
            self._notifier.notify()  # appends may have committed while nobody listened
            return

    async def start(self) -> None:
        if self.pool is not None:
            return
        asyncpg = require("asyncpg", "postgres")
        self._notifier = Notifier()
        with _translate_errors():
            pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size, timeout=self.connect_timeout
            )
            try:
                async with pool.acquire() as con, con.transaction():
                    # Why: concurrent first starts would race on CREATE … IF NOT EXISTS.
                    await con.execute(self.sql.init_lock, f"tidings:{self.schema}")
                    for statement in self.sql.ddl:
                        await con.execute(statement)
                listener = await self._listen()
            except BaseException:
                await pool.close()
                raise
        self.pool, self._listener = pool, listener

    async def close(self) -> None:
        await self._commits.drain()  # queued appends finish before the pool goes away
        pool, listener = self.pool, self._listener
        self.pool = self._listener = None
        self._notifier.close()
        relisten, self._relisten = self._relisten, None
        if relisten is not None:
            relisten.cancel()
            with contextlib.suppress(BaseException):
                await relisten
        with contextlib.suppress(Exception):
            if listener is not None:
                await listener.close()
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.close()

    def _pool(self) -> Any:
        if self.pool is None:
            raise StoreUnavailable("the postgresql recorder is not started (call start())")
        return self.pool

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        validate_append(stream, events, expected_version)
        self._pool()
        return await self._commits.submit((stream, events, expected_version))

    async def _append_many(self, batch: list[Append]) -> list[AppendResult | Exception]:
        events = [e for _, evs, _ in batch for e in evs]
        kinds = [_kind(expected) for _, _, expected in batch]
        pool = self._pool()
        with _translate_errors():
            rows = await pool.fetch(
                self.sql.append,
                [stream for stream, _, _ in batch],
                [category_of(stream) for stream, _, _ in batch],
                [k for k, _ in kinds],
                [v for _, v in kinds],
                [len(evs) for _, evs, _ in batch],
                [e.id for e in events],
                [e.type for e in events],
                [e.data for e in events],
                [encode_metadata(e.metadata) if e.metadata else "{}" for e in events],
                [e.dataversion for e in events],
            )
            outcomes: list[AppendResult | Exception] = []
            for (stream, evs, expected), (status, version, position) in zip(
                batch, rows, strict=True
            ):
                if status == _OK:
                    outcomes.append(AppendResult(version, position))
                elif status == _DELETED:
                    outcomes.append(StreamDeleted(f"stream {stream!r} was deleted"))
                elif status == _CONFLICT:
                    outcomes.append(WrongExpectedVersion(stream, expected, version))
                else:
                    found = {
                        r["event_id"]: (r["name"], r["version"], r["position"])
                        for r in await pool.fetch(self.sql.find_ids, [e.id for e in evs])
                    }
                    try:
                        outcomes.append(resolve_duplicates(stream, evs, expected, found))
                    except StoreError as exc:
                        outcomes.append(exc)
        return outcomes

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
        statement = self.sql.read_bwd if backwards else self.sql.read_fwd
        top = _MAX_BIGINT if to_version is None else to_version
        with _translate_errors():
            rows = await self._pool().fetch(
                statement, stream, from_version, top, None if limit is None else max(limit, 0)
            )
        if rows and rows[0]["deleted"]:
            raise StreamDeleted(f"stream {stream!r} was deleted")
        return [_to_event(r, stream) for r in rows if r["event_id"] is not None]

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, category: str | None = None
    ) -> list[RecordedEvent]:
        with _translate_errors():
            if category is None:
                rows = await self._pool().fetch(self.sql.read_all, from_position, limit)
            else:
                rows = await self._pool().fetch(
                    self.sql.read_category, from_position, limit, category
                )
        return [_to_event(r, r["name"]) for r in rows]

    def subscribe(
        self, from_position: int = 0, *, category: str | None = None
    ) -> AsyncIterator[RecordedEvent]:
        return follow(self.read_all, self._notifier, from_position, category, self.poll_interval)

    async def head(self) -> int:
        with _translate_errors():
            return int(await self._pool().fetchval(self.sql.head))

    @staticmethod
    def _info(row: Any) -> StreamInfo:
        name, version, deleted, updated_at, count = row
        return StreamInfo(name, version, count, deleted, updated_at)

    async def stream_info(self, stream: str) -> StreamInfo | None:
        validate_stream(stream)
        with _translate_errors():
            row = await self._pool().fetchrow(self.sql.info_one, stream)
        return None if row is None else self._info(row)

    async def streams(self, prefix: str = "", limit: int = 1000) -> list[StreamInfo]:
        with _translate_errors():
            rows = await self._pool().fetch(self.sql.info_prefix, prefix, limit)
        return [self._info(r) for r in rows]

    async def delete_stream(self, stream: str) -> None:
        validate_stream(stream)
        with _translate_errors():
            async with self._pool().acquire() as con, con.transaction():
                await con.execute(self.sql.lock)
                await con.execute(self.sql.delete, stream, category_of(stream))

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        validate_stream(snapshot.stream)
        with _translate_errors():
            await self._pool().execute(
                self.sql.save_snapshot,
                snapshot.stream,
                snapshot.version,
                snapshot.type,
                snapshot.data,
                snapshot.recorded_at or time.time(),
            )

    async def read_with_snapshot(
        self, stream: str, to_version: int | None = None
    ) -> tuple[Snapshot | None, list[RecordedEvent]]:
        """Snapshot and the events after it over one pooled connection."""
        validate_stream(stream)
        top = _MAX_BIGINT if to_version is None else to_version
        with _translate_errors():
            async with self._pool().acquire() as con:
                row = await con.fetchrow(self.sql.load_snapshot, stream, top)
                snapshot = self._snapshot(stream, row)
                start = 0 if snapshot is None else snapshot.version + 1
                rows = await con.fetch(self.sql.read_fwd, stream, start, top, None)
        if rows and rows[0]["deleted"]:
            raise StreamDeleted(f"stream {stream!r} was deleted")
        return snapshot, [_to_event(r, stream) for r in rows if r["event_id"] is not None]

    async def load_snapshot(self, stream: str, max_version: int | None = None) -> Snapshot | None:
        validate_stream(stream)
        top = _MAX_BIGINT if max_version is None else max_version
        with _translate_errors():
            row = await self._pool().fetchrow(self.sql.load_snapshot, stream, top)
        return self._snapshot(stream, row)

    @staticmethod
    def _snapshot(stream: str, row: Any) -> Snapshot | None:
        if row[0]:
            raise StreamDeleted(f"stream {stream!r} was deleted")
        if row["stream"] is None:
            return None
        return Snapshot(
            stream=row["stream"],
            version=row["version"],
            type=row["type"],
            data=row["data"],
            recorded_at=row["recorded_at"],
        )


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Strip tidings' own query options (``schema``) from a PostgreSQL URL."""
    parts = urlsplit(url)
    if not parts.netloc and not parts.path:
        raise UnsupportedURL(f"{url!r} is not a PostgreSQL URL (postgresql://user@host/db)")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k == "schema"}
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql"
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), ours


def create(url: str, **options: Any) -> PostgresRecorder:
    """Recorder for ``postgresql://user@host:5432/db[?schema=name]``.

    Options: ``schema`` (default ``public``), ``pool_size``, ``poll_interval``,
    ``connect_timeout``. The driver is imported lazily (``pip install 'tidings[postgres]'``).
    """
    require("asyncpg", "postgres")
    dsn, ours = split_url(url)
    return PostgresRecorder(dsn, **{**ours, **options})
