"""Embedded broker ``sqlite:///path.db``: durable, shared by every process on one machine.

URLs: ``sqlite:///relative/path.db`` (relative to the working directory) and
``sqlite:////abs/path.db``. Options, as keyword arguments of ``create`` or URL query
parameters (``sqlite:///x.db?busy_timeout=10``):

``busy_timeout`` (seconds, default 5)
    How long a write waits for another process's transaction before ``BrokerUnavailable``.
``poll_interval`` (seconds, default 0.005) and ``max_poll_interval`` (default 0.1)
    An idle ``fetch`` polls for other processes' writes and delayed messages coming due,
    backing off from the first to the second. Writes made through this transport wake
    its own fetches at once.
``retention`` (seconds, default 3600)
    A message row is kept while any group has it pending and, in any case, for
    ``retention`` seconds after it became deliverable (publish time, or ``deliver_at``);
    ``start="earliest"`` replays what is kept. ``0`` deletes messages once every group
    acked them.
``gc_interval`` (seconds, default 1)
    How often the writer deletes, in batches, message rows past retention.

Design. One writer thread owns the write connection; ``publish``, ``ack``, ``nack``, group
creation, purge and leases are queued to it, and it runs everything queued in one
``BEGIN IMMEDIATE`` transaction (group commit: one fsync for many callers), then settles
the callers' futures with ``loop.call_soon_threadsafe``. Reads that take no lock (idle
polls, browse, stats) run on a second connection in a reader thread: no sqlite call runs
on the event loop. WAL mode lets the readers of every process run beside the one writer,
and ``BEGIN IMMEDIATE`` plus ``busy_timeout`` queue the writers of several processes.

Publishing inserts each message once, and one delivery row per group of its topic. A lease
is one ``UPDATE`` that stamps ``visible_at = now + lease``, a lease token and ``attempt +
1`` on the oldest visible rows; ack deletes the row if the same lease still holds. A
process killed mid-handler leaves its rows leased until ``visible_at`` passes; then any
consumer of the group leases them again, with the next attempt number. Schema, queries
and the reasons for them: :mod:`tidings.transports._sqlite_sql`; threads:
:mod:`tidings.transports._sqlite_threads`.

``ordered=True`` is a property of the subscription: every consumer of an ordered group
should subscribe with it. ``start`` only matters when the group is created.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from tidings.errors import EncodeError, TransportClosed, UnsupportedURL
from tidings.message import Message
from tidings.transports import _sqlite_sql as sql
from tidings.transports._sqlite_threads import Op, Reader, Result, Writer
from tidings.transports.base import (
    Delivery,
    Features,
    GroupStats,
    StartFrom,
    Subscription,
    TopicStats,
    Transport,
)

__all__ = ["SqliteTransport", "create"]

T = TypeVar("T")

_OPTIONS: dict[str, tuple[type, object]] = {
    "busy_timeout": (float, 5.0),
    "poll_interval": (float, 0.005),
    "max_poll_interval": (float, 0.1),
    "retention": (float, 3600.0),
    "gc_interval": (float, 1.0),
}


def parse_url(url: str) -> str:
    """The database path of a ``sqlite:///path`` URL; raises ``UnsupportedURL``."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise UnsupportedURL(f"not a sqlite URL: {url!r}; use 'sqlite:///path.db'")
    if parts.netloc:
        raise UnsupportedURL(
            f"sqlite URL {url!r} names a host ({parts.netloc!r}); use three slashes for a"
            " relative path ('sqlite:///data/tidings.db') or four for an absolute one"
            " ('sqlite:////var/lib/tidings.db')"
        )
    path = unquote(parts.path[1:])
    if not path or path.endswith("/"):
        raise UnsupportedURL(f"sqlite URL {url!r} has no file name; e.g. 'sqlite:///./tidings.db'")
    if path == ":memory:" or path.startswith("file:"):
        raise UnsupportedURL(
            f"sqlite URL {url!r}: an in-memory database cannot be shared between the"
            " transport's connections; use 'memory://' for a RAM-only broker"
        )
    return path


def create(url: str, **options: object) -> SqliteTransport:
    """Transport factory for ``sqlite:///path.db`` (options: see the module docstring)."""
    path = parse_url(url)
    merged: dict[str, object] = dict(parse_qsl(urlsplit(url).query))
    merged.update(options)
    unknown = sorted(set(merged) - set(_OPTIONS))
    if unknown:
        raise UnsupportedURL(
            f"unknown sqlite transport options {unknown} in {url!r}; supported: {sorted(_OPTIONS)}"
        )
    values: dict[str, Any] = {}
    for name, (kind, default) in _OPTIONS.items():
        raw = merged.get(name, default)
        try:
            value = None if raw is None else kind(raw)
        except (TypeError, ValueError) as exc:
            raise UnsupportedURL(f"sqlite option {name}={raw!r} is not a {kind.__name__}") from exc
        if value is not None and value < 0:
            raise UnsupportedURL(f"sqlite option {name}={raw!r} must not be negative")
        values[name] = value
    return SqliteTransport(url, path, **values)


class _SqliteDelivery(Delivery):
    __slots__ = ("_done", "_lease", "_seq", "_sub", "attempt", "message")

    def __init__(
        self, sub: _SqliteSubscription, lease: str, seq: int, attempt: int, data: bytes
    ) -> None:
        self._sub = sub
        self._lease = lease
        self._seq = seq
        self.attempt = attempt
        self.message = sql.decode_row(sub.topic, seq, data)
        self._done = False

    async def ack(self) -> None:
        await self._sub.settle((self,))

    async def nack(self, delay: float = 0.0) -> None:
        await self._sub.settle((), ((self, delay),))


class _SqliteSubscription(Subscription):
    def __init__(
        self, transport: SqliteTransport, topic: str, group_id: int, ordered: bool, lease: float
    ) -> None:
        self.transport = transport
        self.topic = topic
        self.group_id = group_id
        self.consumer = f"{os.getpid()}-{secrets.token_hex(4)}"
        """Prefix of this subscription's lease tokens (``<consumer>/<n>``, one per fetch)."""
        self._fetches = 0
        self._ordered = ordered
        self._lease_for = lease
        self.closed = False

    async def fetch(self, max_messages: int) -> list[Delivery]:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, got {max_messages}")
        transport = self.transport
        wait = transport._poll_interval
        look = True
        while not (self.closed or transport._closing):
            # Take the event before looking, so a write that lands meanwhile still wakes us.
            event = transport._event(self.topic)
            try:
                if look or await transport._read(sql.probe, self.group_id, self._ordered):
                    self._fetches += 1
                    lease = f"{self.consumer}/{self._fetches}"
                    args = (self.group_id, self._ordered, max_messages, self._lease_for, lease)
                    rows = await transport._lease(args)
                    if rows:
                        return [_SqliteDelivery(self, lease, *row) for row in rows]
            except TransportClosed:
                if transport._closing:
                    return []  # closed while this fetch was waiting: the contract says []
                raise
            try:
                async with asyncio.timeout(wait):
                    await event.wait()
                wait, look = transport._poll_interval, True
            except TimeoutError:
                # Nothing from this process: poll for other processes' writes and for delays
                # coming due with a read-only probe (no write lock), backing off.
                wait, look = min(wait * 2, transport._max_poll_interval), False
        return []

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport._notify({self.topic})

    async def settle(
        self, acks: Sequence[Delivery], nacks: Sequence[tuple[Delivery, float]] = ()
    ) -> None:
        """Queue every decision at once: they reach the writer as one op, one commit, and
        share one future."""
        transport = self.transport
        writer = transport._writer
        if transport._closing or writer is None:
            raise TransportClosed(f"transport {transport.url} is closed")
        future: asyncio.Future[None] = writer.loop.create_future()
        taken: list[_SqliteDelivery] = []
        topics: set[str] = set()
        items: list[tuple[str, tuple[Any, ...], asyncio.Future[None]]] = []
        group_id = self.group_id
        for d in acks:
            assert isinstance(d, _SqliteDelivery)
            if d._done:
                continue
            items.append(("ack", (group_id, d._lease, d._seq), future))
            if d.message.key is not None:
                topics.add(self.topic)
            taken.append(d)
        for d, delay in nacks:
            assert isinstance(d, _SqliteDelivery)
            if d._done:
                continue
            items.append(("nack", (group_id, d._lease, max(delay, 0.0), d._seq), future))
            topics.add(self.topic)
            taken.append(d)
        if not items:
            return
        for d in taken:
            d._done = True
        transport._decide(items, topics)
        try:
            await future
        except BaseException:
            for d in taken:
                d._done = False
            raise


class SqliteTransport(Transport):
    """Broker in one SQLite file, shared by every process that opens it."""

    features = Features(
        persistent=True, multi_process=True, ordered=True, replay=True, delay=True, browse=True
    )

    def __init__(
        self,
        url: str,
        path: str,
        *,
        busy_timeout: float = 5.0,
        poll_interval: float = 0.005,
        max_poll_interval: float = 0.1,
        retention: float = 3600.0,
        gc_interval: float = 1.0,
    ) -> None:
        self.url = url
        self.path = path
        self._busy_timeout = busy_timeout
        self._poll_interval = max(poll_interval, 0.001)
        self._max_poll_interval = max(max_poll_interval, self._poll_interval)
        self._retention = retention
        self._gc_interval = gc_interval
        self._writer: Writer | None = None
        self._decisions: list[tuple[str, tuple[Any, ...], asyncio.Future[None]]] = []
        self._decision_topics: set[str] = set()
        self._reader = Reader(path, busy_timeout)
        self._events: dict[str, asyncio.Event] = {}
        self._start_lock = asyncio.Lock()
        self._closing = False
        self._closed: asyncio.Future[None] | None = None

    async def start(self) -> None:
        async with self._start_lock:
            if self._closing:
                raise TransportClosed(f"transport {self.url} is closed")
            if self._writer is None:
                writer = Writer(
                    self.path,
                    self._busy_timeout,
                    self._retention,
                    self._gc_interval,
                    asyncio.get_running_loop(),
                    self._resolve,
                )
                await asyncio.to_thread(writer.start)
                self._writer = writer

    async def _submit(self, kind: str, args: Any, topics: Collection[str] = ()) -> Any:
        if self._writer is None and not self._closing:
            await self.start()
        return await self._enqueue(kind, args, topics)

    def _enqueue(self, kind: str, args: Any, topics: Collection[str] = ()) -> asyncio.Future[Any]:
        """Queue a write for the writer thread; the future settles once it committed."""
        writer = self._writer
        if self._closing or writer is None:
            raise TransportClosed(f"transport {self.url} is closed")
        future: asyncio.Future[Any] = writer.loop.create_future()
        writer.submit(Op(kind, args, future, topics))
        return future

    def _decide(
        self, items: list[tuple[str, tuple[Any, ...], asyncio.Future[None]]], topics: set[str]
    ) -> None:
        """Queue acks and nacks. Those made in one loop iteration (several workers settling
        at once) reach the writer as one op, which spares it per-ack work."""
        writer = self._writer
        assert writer is not None
        if not self._decisions:
            writer.loop.call_soon(self._flush_decisions)
        self._decisions.extend(items)
        self._decision_topics.update(topics)

    def _flush_decisions(self) -> None:
        if self._decisions and self._writer is not None:
            op = Op("decide", self._decisions, None, self._decision_topics)
            self._decisions, self._decision_topics = [], set()
            self._writer.submit(op)

    async def _lease(self, args: tuple[Any, ...]) -> list[tuple[int, int, bytes]]:
        future = self._enqueue("lease", args)
        try:
            rows: list[tuple[int, int, bytes]] = await future
        except asyncio.CancelledError:
            # Cancelled after the lease committed but before the fetch resumed: hand back.
            if future.done() and not future.cancelled() and future.exception() is None:
                self._unlease(args, future.result())
            raise
        return rows

    def _resolve(self, results: list[Result]) -> None:
        """Runs on the loop: settle each caller's future, wake fetches of touched topics."""
        touched: set[str] = set()
        for op, result, error in results:
            if error is None:
                touched.update(op.topics)
            if op.kind == "decide":
                for _, _, decided in op.args:
                    if decided.done():
                        continue
                    if error is None:
                        decided.set_result(None)
                    else:
                        decided.set_exception(error)
                continue
            future = op.future
            if future is None:
                continue
            if future.done():
                if op.kind == "lease" and result:
                    # The fetch was cancelled after its lease committed: hand the rows back.
                    self._unlease(op.args, result)
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        if touched:
            self._notify(touched)

    def _unlease(self, args: tuple[Any, ...], rows: list[tuple[int, int, bytes]]) -> None:
        if self._writer is None or self._closing or not rows:
            return  # the leases expire on their own
        group_id, _, _, _, lease = args
        topics = (sql.decode_row("", rows[0][0], rows[0][2]).topic,)  # wake that topic's fetches
        seqs = [seq for seq, _, _ in rows]
        self._writer.submit(Op("unlease", (group_id, lease, seqs), None, topics))

    def _event(self, topic: str) -> asyncio.Event:
        event = self._events.get(topic)
        if event is None:
            event = self._events[topic] = asyncio.Event()
        return event

    def _notify(self, topics: set[str] | list[str]) -> None:
        for topic in topics:
            event = self._events.pop(topic, None)
            if event is not None:
                event.set()

    async def publish(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        now = time.time()
        rows: list[sql.MessageRow] = []
        for m in messages:
            ready_at = now if m.deliver_at is None or m.deliver_at < now else m.deliver_at
            try:
                rows.append((m.topic, m.key, ready_at, sql.encode_message(m)))
            except UnicodeEncodeError as exc:
                raise EncodeError(
                    f"message {m.id}: its topic, key or a header is not encodable text ({exc});"
                    " use valid Unicode without lone surrogates"
                ) from exc
        await self._submit("publish", rows, {m.topic for m in messages})

    async def _group_id(self, topic: str, group: str, start: StartFrom) -> int:
        if start not in ("latest", "earliest"):
            raise ValueError(f"start must be 'latest' or 'earliest', got {start!r}")
        group_id: int = await self._submit("group", (topic, group, start))
        return group_id

    async def subscribe(
        self,
        topic: str,
        group: str,
        *,
        ordered: bool = False,
        start: StartFrom = "latest",
        lease: float = 30.0,
    ) -> Subscription:
        if lease <= 0:
            raise ValueError(f"lease must be positive, got {lease}")
        group_id = await self._group_id(topic, group, start)
        return _SqliteSubscription(self, topic, group_id, ordered, lease)

    async def ensure_group(self, topic: str, group: str, *, start: StartFrom = "latest") -> None:
        await self._group_id(topic, group, start)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closing:
            raise TransportClosed(f"transport {self.url} is closed")
        if self._writer is None:
            await self.start()  # creates the schema
        return await self._reader.run(fn, *args)

    async def groups(self, topic: str) -> list[str]:
        return await self._read(sql.read_groups, topic)

    async def browse(self, topic: str, group: str, limit: int = 100) -> list[Message]:
        rows = await self._read(sql.read_pending, topic, group, limit)
        return [sql.decode_row(topic, seq, data) for seq, data in rows]

    async def purge(self, topic: str, group: str, ids: Sequence[str] | None = None) -> int:
        if ids is not None and not ids:
            return 0
        count: int = await self._submit(
            "purge", (topic, group, None if ids is None else list(ids)), (topic,)
        )
        return count

    async def delete_group(self, topic: str, group: str) -> bool:
        deleted: bool = await self._submit("drop_group", (topic, group), (topic,))
        return deleted

    async def stats(self) -> list[TopicStats]:
        counts, groups = await self._read(sql.read_stats)
        per_topic: dict[str, list[GroupStats]] = {topic: [] for topic in counts}
        for topic, name, pending, inflight in groups:
            per_topic.setdefault(topic, []).append(GroupStats(name, pending, inflight))
        return [
            TopicStats(topic, counts.get(topic, 0), tuple(per_topic[topic]))
            for topic in sorted(per_topic)
        ]

    async def close(self) -> None:
        """Flush queued writes, stop the threads, close both connections. Idempotent."""
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
            self._closing = True
            self._flush_decisions()  # acks made before close() are committed, not dropped
            self._notify(list(self._events))
            try:
                async with self._start_lock:  # a start() in progress finishes first
                    writer, self._writer = self._writer, None
                if writer is not None:
                    await asyncio.to_thread(writer.stop)
                await asyncio.to_thread(self._reader.close)
            finally:
                self._closed.set_result(None)
        await asyncio.shield(self._closed)
