"""Schema and statements of the SQLite transport; every function here blocks (run in a thread).

Tables carry a ``broker_`` prefix: the default URL puts the broker and the event store in
one file (``sqlite:///./tidings.db``). All values are bound parameters.

Fan-out at write: publishing inserts the message once into ``broker_messages`` and, in the
same transaction and with one ``INSERT ... SELECT``, one small row per existing group of
its topic into ``broker_deliveries``; an ack deletes that row. The alternative, a per-group
cursor plus an exception table for leased, delayed and nacked rows, writes fewer rows at
publish but needs the exception row for every leased message anyway, and makes delays and
per-key order two code paths each. One row per (group, message) keeps every rule a single
indexed query, and the fan-out runs in C.

``visible_at`` folds ``deliver_at``, the nack delay and the lease expiry into one column: a
row is leasable iff ``visible_at <= now``, in flight iff ``lease IS NOT NULL AND visible_at
> now``. Leasing is one range scan of ``(group_id, visible_at)``, oldest first, so expired
leases come back in the order they expired. ``lease`` is a token unique to one lease
operation (``<pid>-<random>/<n>``, its prefix the consumer id): ack and nack match on it, so
a stale :class:`Delivery` never touches a row leased again since.

The message itself is one msgpack blob (the :class:`Message` struct): binding one blob is
far cheaper in ``sqlite3`` than binding six columns, and msgspec decodes it straight back.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence

import msgspec

from tidings.errors import BrokerUnavailable, EncodeError, TransportClosed
from tidings.message import Message

__all__ = [
    "MessageRow",
    "connect",
    "create_schema",
    "decode_message",
    "decode_row",
    "do_ack",
    "do_drop_group",
    "do_gc",
    "do_group",
    "do_lease",
    "do_nack",
    "do_publish",
    "do_purge",
    "do_unlease",
    "encode_message",
    "probe",
    "read_groups",
    "read_pending",
    "read_stats",
    "set_durable",
    "transaction",
]

encode_message = msgspec.msgpack.Encoder().encode
decode_message = msgspec.msgpack.Decoder(Message).decode


def decode_row(topic: str, seq: int, data: bytes) -> Message:
    """The stored message; a row that no longer decodes (damaged on disk, written by hand)
    becomes a message without CloudEvents headers, id ``sqlite-row-<seq>``, which the app
    dead-letters as poison, instead of failing every fetch that leases it."""
    try:
        return decode_message(data)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
        return Message(
            id=f"sqlite-row-{seq}",
            topic=topic,
            body=data if isinstance(data, bytes) else str(data).encode(),
            headers={"tidings-corrupt": f"stored row {seq} does not decode: {exc}"},
        )


# (topic, key, ready_at, data): ready_at = max(deliver_at, publish time).
MessageRow = tuple[str, str | None, float, bytes]

SCHEMA = """
CREATE TABLE IF NOT EXISTS broker_groups (
    group_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (topic, name)
);
CREATE TABLE IF NOT EXISTS broker_messages (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic    TEXT NOT NULL,
    key      TEXT,
    ready_at REAL NOT NULL,
    data     BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS broker_deliveries (
    group_id   INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    key        TEXT,
    visible_at REAL NOT NULL,
    attempt    INTEGER NOT NULL DEFAULT 0,
    lease      TEXT,
    PRIMARY KEY (group_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS broker_deliveries_visible
    ON broker_deliveries (group_id, visible_at);
CREATE INDEX IF NOT EXISTS broker_deliveries_key
    ON broker_deliveries (group_id, key, seq) WHERE key IS NOT NULL
"""
# AUTOINCREMENT: seq never goes back after garbage collection, so it stays publish order.

_SHAPE_MESSAGES = "SELECT seq, topic, key, ready_at, data FROM broker_messages LIMIT 0"
_SHAPE_DELIVERIES = (
    "SELECT group_id, seq, key, visible_at, attempt, lease FROM broker_deliveries LIMIT 0"
)
_GROUP_ID = "SELECT group_id FROM broker_groups WHERE topic = ? AND name = ?"
_NEW_GROUP = "INSERT OR IGNORE INTO broker_groups (topic, name, created_at) VALUES (?, ?, ?)"
_INSERT_MESSAGE = "INSERT INTO broker_messages (topic, key, ready_at, data) VALUES (?, ?, ?, ?)"
# The write lock is held, so this transaction's rows are exactly those with seq > the max
# before it.
_FAN_OUT = (
    "INSERT INTO broker_deliveries (group_id, seq, key, visible_at)"
    " SELECT g.group_id, m.seq, m.key, m.ready_at"
    " FROM broker_messages m JOIN broker_groups g ON g.topic = m.topic WHERE m.seq > ?"
)
_REPLAY = (
    "INSERT INTO broker_deliveries (group_id, seq, key, visible_at)"
    " SELECT ?, seq, key, ready_at FROM broker_messages WHERE topic = ?"
)
_ELIGIBLE = "SELECT seq FROM broker_deliveries d WHERE d.group_id = ? AND d.visible_at <= ?"
# Ordered: only the oldest remaining row of a key may be leased. While it is leased, or
# delayed by a nack, it is not visible and its followers are not heads: the rows themselves
# block the key, across processes.
_HEAD_OF_KEY = (
    " AND (d.key IS NULL OR NOT EXISTS (SELECT 1 FROM broker_deliveries e"
    " WHERE e.group_id = d.group_id AND e.key = d.key AND e.seq < d.seq))"
)
_OLDEST = " ORDER BY d.visible_at, d.seq LIMIT ?"
# No RETURNING: in sqlite3 it costs more than the update itself. The rows just leased are
# found again through the index by their exact (visible_at, lease) stamp.
_LEASE = (
    "UPDATE broker_deliveries SET visible_at = ?, lease = ?, attempt = attempt + 1"
    " WHERE group_id = ? AND seq IN ({})"
)
_LEASE_ANY = _LEASE.format(_ELIGIBLE + _OLDEST)
_LEASE_ORDERED = _LEASE.format(_ELIGIBLE + _HEAD_OF_KEY + _OLDEST)
# Query plans are pinned (INDEXED BY, unary +) because there are no ANALYZE statistics:
# otherwise SQLite may pick a scan of the group's whole backlog.
_LEASED = (
    "SELECT d.seq, d.attempt, m.data"
    " FROM broker_deliveries d INDEXED BY broker_deliveries_visible"
    " JOIN broker_messages m ON m.seq = d.seq"
    " WHERE d.group_id = ? AND d.visible_at = ? AND d.lease = ?"
)
_MINE = " WHERE group_id = ? AND lease = ? AND seq IN (SELECT value FROM json_each(?))"
_STILL_HELD = " AND +visible_at > ?"
_ACK = "DELETE FROM broker_deliveries" + _MINE + _STILL_HELD
_NACK = "UPDATE broker_deliveries SET visible_at = ?, lease = NULL" + _MINE + _STILL_HELD
# A fetch cancelled after its lease committed hands the rows back as if never leased.
_UNLEASE = (
    "UPDATE broker_deliveries SET visible_at = ?, lease = NULL, attempt = attempt - 1" + _MINE
)
_PURGE_ALL = "DELETE FROM broker_deliveries WHERE group_id = ?"
_DROP_GROUP = "DELETE FROM broker_groups WHERE group_id = ?"
_PURGE_IDS = (
    "DELETE FROM broker_deliveries WHERE group_id = ? AND seq IN (SELECT value FROM json_each(?))"
)
_PENDING = (
    "SELECT d.seq, m.data FROM broker_deliveries d JOIN broker_messages m ON m.seq = d.seq"
    " WHERE d.group_id = ? ORDER BY d.seq"
)
# Retention: a message row is deleted once no group has it pending and it became deliverable
# more than ``retention`` seconds ago. The writer runs this every ``gc_interval`` seconds,
# batched: a range delete below both the low-water mark (the oldest seq pending in any
# group) and the retention cutoff, then a bounded sweep above the low-water mark, so that
# one long-delayed message does not pin everything published after it.
_LOW_WATER = (
    "SELECT min((SELECT d.seq FROM broker_deliveries d WHERE d.group_id = g.group_id"
    " ORDER BY d.seq LIMIT 1)) FROM broker_groups g"
)
_GC_RANGE = "DELETE FROM broker_messages WHERE seq < ?"
_GC_SWEEP = (
    "DELETE FROM broker_messages WHERE seq IN (SELECT m.seq FROM broker_messages m"
    " WHERE m.seq >= ? AND m.seq < ? AND NOT EXISTS (SELECT 1 FROM broker_groups g"
    " JOIN broker_deliveries d ON d.group_id = g.group_id AND d.seq = m.seq"
    " WHERE g.topic = m.topic))"
)
_SEQ_AT = "SELECT seq, ready_at FROM broker_messages WHERE seq >= ? ORDER BY seq LIMIT 1"
GC_BATCH = 20_000


@contextlib.contextmanager
def _translate_errors(path: str) -> Iterator[None]:
    """Map sqlite3 errors onto tidings errors: the one boundary where they can occur."""
    try:
        yield
    except UnicodeEncodeError as exc:
        raise EncodeError(
            f"a topic, group, key or header is not encodable text ({exc}); "
            "names and headers must be valid Unicode without lone surrogates"
        ) from exc
    except sqlite3.ProgrammingError as exc:
        if "closed" in str(exc):
            raise TransportClosed(f"sqlite broker {path!r} is closed") from exc
        raise
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            raise BrokerUnavailable(
                f"sqlite broker {path!r} stayed locked by another connection past"
                f" busy_timeout ({text}); raise busy_timeout or reduce write contention"
            ) from exc
        raise BrokerUnavailable(f"sqlite broker {path!r} is unavailable: {text}") from exc
    except sqlite3.DatabaseError as exc:
        raise BrokerUnavailable(f"sqlite broker {path!r} failed: {exc}") from exc


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Open a WAL connection with explicit transactions (``isolation_level=None``)."""
    with _translate_errors(path):
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA wal_autocheckpoint = 10000")
            set_durable(conn, True)
        except BaseException:
            conn.close()
            raise
    return conn


def set_durable(conn: sqlite3.Connection, durable: bool) -> None:
    """``synchronous=FULL`` (durable) or ``NORMAL`` for the next commits of ``conn``.

    FULL in WAL mode fsyncs the WAL at every commit: when ``publish`` returns, the batch
    survives power loss. NORMAL in WAL mode survives a crash of the process but not of the
    machine; the next FULL commit fsyncs the WAL, and so every NORMAL commit before it. The
    writer's group commit spreads each fsync over every concurrent caller.
    """
    conn.execute("PRAGMA synchronous = FULL" if durable else "PRAGMA synchronous = NORMAL")


def create_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the tables if missing; refuse a file whose broker tables have another shape."""
    with transaction(conn):
        for statement in SCHEMA.split(";"):
            conn.execute(statement)
        try:
            conn.execute(_SHAPE_MESSAGES)
            conn.execute(_SHAPE_DELIVERIES)
        except sqlite3.OperationalError as exc:
            raise BrokerUnavailable(
                f"{path!r} holds broker tables of another layout ({exc}); it was written by"
                " another tidings version: point the broker URL at a new file"
            ) from exc


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE``: take the write lock up front, so a write never fails mid-way on a
    lock upgrade (SQLITE_BUSY without the busy handler) as a deferred transaction can."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # some errors (SQLITE_FULL, IOERR) already rolled back
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def int_list(values: Sequence[int]) -> str:
    """A JSON array for ``json_each(?)``: one bound parameter instead of N placeholders."""
    return "[" + ",".join(map(str, values)) + "]"


# Writer operations: called by the writer thread inside its transaction.


def do_group(conn: sqlite3.Connection, topic: str, name: str, start: str, now: float) -> int:
    created = conn.execute(_NEW_GROUP, (topic, name, now)).rowcount == 1
    (group_id,) = conn.execute(_GROUP_ID, (topic, name)).fetchone()
    if created and start == "earliest":
        conn.execute(_REPLAY, (group_id, topic))
    return int(group_id)


def do_publish(conn: sqlite3.Connection, rows: list[MessageRow]) -> None:
    (before,) = conn.execute("SELECT coalesce(max(seq), 0) FROM broker_messages").fetchone()
    conn.executemany(_INSERT_MESSAGE, rows)
    conn.execute(_FAN_OUT, (before,))


def do_ack(
    conn: sqlite3.Connection, group_id: int, lease: str, seqs: list[int], now: float
) -> None:
    conn.execute(_ACK, (group_id, lease, int_list(seqs), now))


def do_nack(
    conn: sqlite3.Connection, group_id: int, lease: str, seqs: list[int], at: float, now: float
) -> None:
    conn.execute(_NACK, (at, group_id, lease, int_list(seqs), now))


def do_unlease(
    conn: sqlite3.Connection, group_id: int, lease: str, seqs: list[int], now: float
) -> None:
    conn.execute(_UNLEASE, (now, group_id, lease, int_list(seqs)))


def do_lease(
    conn: sqlite3.Connection,
    group_id: int,
    ordered: bool,
    limit: int,
    until: float,
    lease: str,
    now: float,
) -> list[tuple[int, int, bytes]]:
    """Lease up to ``limit`` rows: (seq, attempt, message data), in seq order."""
    sql = _LEASE_ORDERED if ordered else _LEASE_ANY
    if conn.execute(sql, (until, lease, group_id, group_id, now, limit)).rowcount <= 0:
        return []
    rows: list[tuple[int, int, bytes]] = conn.execute(_LEASED, (group_id, until, lease)).fetchall()
    rows.sort()
    return rows


def do_purge(conn: sqlite3.Connection, topic: str, name: str, ids: Sequence[str] | None) -> int:
    """Delete pending rows of a group (all, or those whose message id is in ``ids``)."""
    found = conn.execute(_GROUP_ID, (topic, name)).fetchone()
    if found is None:
        return 0
    (group_id,) = found
    if ids is None:
        return int(conn.execute(_PURGE_ALL, (group_id,)).rowcount)
    wanted = set(ids)
    seqs = [
        seq
        for seq, data in conn.execute(_PENDING, (group_id,))
        if decode_row(topic, seq, data).id in wanted
    ]
    conn.execute(_PURGE_IDS, (group_id, int_list(seqs)))
    return len(seqs)


def do_drop_group(conn: sqlite3.Connection, topic: str, name: str) -> bool:
    """Delete a group and its pending rows; True if it existed."""
    found = conn.execute(_GROUP_ID, (topic, name)).fetchone()
    if found is None:
        return False
    conn.execute(_PURGE_ALL, found)
    conn.execute(_DROP_GROUP, found)
    return True


def do_gc(conn: sqlite3.Connection, cutoff: float, cursor: int) -> tuple[int, int]:
    """One bounded batch of garbage collection; returns (rows deleted, next sweep cursor)."""
    first, end = conn.execute(
        "SELECT coalesce(min(seq), 0), coalesce(max(seq), 0) + 1 FROM broker_messages"
    ).fetchone()
    cutoff_seq = _seq_ready_since(conn, cutoff, first, end)
    (low_water,) = conn.execute(_LOW_WATER).fetchone()
    limit = cutoff_seq if low_water is None else min(low_water, cutoff_seq)
    deleted = conn.execute(_GC_RANGE, (min(limit, first + GC_BATCH),)).rowcount
    # The sweep looks at a window of GC_BATCH rows per pass, resuming where it stopped and
    # wrapping around at the cutoff, so a large pending backlog costs a bounded pass.
    start = max(cursor, limit)
    stop = min(start + GC_BATCH, cutoff_seq)
    deleted += conn.execute(_GC_SWEEP, (start, stop)).rowcount
    return deleted, stop if stop < cutoff_seq else 0


def _seq_ready_since(conn: sqlite3.Connection, cutoff: float, lo: int, hi: int) -> int:
    """First seq in [lo, hi) deliverable at or after ``cutoff``, by binary search (ready_at
    grows with seq except for delayed messages, which only make the answer conservative)."""
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute(_SEQ_AT, (mid,)).fetchone()
        if row is None or row[1] >= cutoff:
            hi = mid
        else:
            lo = row[0] + 1
    return int(lo)


# Reads: run on the reader connection, no write lock.


def probe(conn: sqlite3.Connection, group_id: int, ordered: bool) -> bool:
    """Whether a lease would find something now (polling without the write lock)."""
    sql = _ELIGIBLE + (_HEAD_OF_KEY if ordered else "") + " LIMIT 1"
    return conn.execute(sql, (group_id, time.time())).fetchone() is not None


def read_groups(conn: sqlite3.Connection, topic: str) -> list[str]:
    sql = "SELECT name FROM broker_groups WHERE topic = ? ORDER BY name"
    return [name for (name,) in conn.execute(sql, (topic,))]


def read_pending(
    conn: sqlite3.Connection, topic: str, name: str, limit: int
) -> list[tuple[int, bytes]]:
    found = conn.execute(_GROUP_ID, (topic, name)).fetchone()
    if found is None:
        return []
    return list(conn.execute(_PENDING + " LIMIT ?", (found[0], limit)))


_TOPIC_COUNTS = "SELECT topic, count(*) FROM broker_messages GROUP BY topic"
_GROUP_COUNTS = (
    "SELECT g.topic, g.name, count(d.seq),"
    " coalesce(sum(d.lease IS NOT NULL AND d.visible_at > ?), 0)"
    " FROM broker_groups g LEFT JOIN broker_deliveries d ON d.group_id = g.group_id"
    " GROUP BY g.group_id ORDER BY g.topic, g.name"
)


def read_stats(
    conn: sqlite3.Connection,
) -> tuple[dict[str, int], list[tuple[str, str, int, int]]]:
    """Retained messages per topic, and (topic, group, pending, inflight) per group."""
    conn.execute("BEGIN")  # one snapshot for both queries
    try:
        counts = dict(conn.execute(_TOPIC_COUNTS).fetchall())
        groups = conn.execute(_GROUP_COUNTS, (time.time(),)).fetchall()
    finally:
        conn.execute("COMMIT")
    return counts, groups
