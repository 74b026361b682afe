"""In-process transport ``memory://[name]``: RAM only, for tests and single-process apps.

``memory://`` gives a private broker per transport instance; ``memory://NAME`` shares one
broker between every transport opened with that name in this process (a publisher app and
a consumer app in one test, say). Topics keep their last ``retention`` messages for
``start="earliest"`` replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Sequence
from urllib.parse import urlsplit

from tidings.errors import TransportClosed, UnsupportedURL
from tidings.message import Message
from tidings.transports.base import (
    Delivery,
    Features,
    GroupStats,
    StartFrom,
    Subscription,
    TopicStats,
    Transport,
)

__all__ = ["MemoryTransport", "create"]

_tokens = itertools.count(1)


class _Entry:
    __slots__ = ("attempt", "lease_until", "message", "seq", "token")

    def __init__(self, message: Message, seq: int) -> None:
        self.message = message
        self.seq = seq
        self.attempt = 0
        self.token = 0
        self.lease_until = 0.0


class _Group:
    """One group's queue: ready FIFO, delayed heap, in-flight leases, per-key blocking."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready: deque[_Entry] = deque()
        self.delayed: list[tuple[float, int, _Entry]] = []
        self.inflight: dict[int, _Entry] = {}
        self.ordered = False
        self.busy_keys: dict[str, deque[_Entry]] = {}
        self.wakeup = asyncio.Event()

    def enqueue(self, entry: _Entry, now: float) -> None:
        key = entry.message.key
        if self.ordered and key is not None:
            waiting = self.busy_keys.get(key)
            if waiting is not None:
                waiting.append(entry)
                return
            self.busy_keys[key] = deque()
        self._schedule(entry, entry.message.deliver_at or 0.0, now)

    def _schedule(self, entry: _Entry, at: float, now: float) -> None:
        if at > now:
            heapq.heappush(self.delayed, (at, entry.seq, entry))
        else:
            self.ready.append(entry)
        self.wakeup.set()  # an idle fetch recomputes its deadline for a delayed entry too

    def make_ordered(self, now: float) -> None:
        """Turn an unordered group ordered: rebuild the per-key queues from what waits."""
        if self.ordered:
            return
        self.ordered = True
        waiting = sorted([*self.ready, *(d[2] for d in self.delayed)], key=lambda e: e.seq)
        self.ready.clear()
        self.delayed.clear()
        for e in self.inflight.values():
            if e.message.key is not None:
                self.busy_keys.setdefault(e.message.key, deque())
        for e in waiting:
            self.enqueue(e, now)

    def release_key(self, entry: _Entry, now: float) -> None:
        key = entry.message.key
        if not (self.ordered and key is not None):
            return
        waiting = self.busy_keys.get(key)
        if waiting:
            nxt = waiting.popleft()
            self._schedule(nxt, nxt.message.deliver_at or 0.0, now)
        else:
            self.busy_keys.pop(key, None)

    def settle(self, token: int, delay: float | None) -> None:
        """Ack (``delay`` None) or nack the lease ``token``; a stale token is ignored."""
        entry = self.inflight.pop(token, None)
        if entry is None:
            return
        entry.token = 0
        now = time.time()
        if delay is None:
            self.release_key(entry, now)
        else:
            self._schedule(entry, now + delay, now)

    def housekeep(self, now: float) -> float | None:
        """Move due delayed entries to ready and expire leases; return the next deadline."""
        while self.delayed and self.delayed[0][0] <= now:
            self.ready.append(heapq.heappop(self.delayed)[2])
        nxt: float | None = self.delayed[0][0] if self.delayed else None
        expired = [e for e in self.inflight.values() if e.lease_until <= now]
        for e in expired:
            del self.inflight[e.token]
            e.token = 0
            self.ready.appendleft(e)
        for e in self.inflight.values():
            if nxt is None or e.lease_until < nxt:
                nxt = e.lease_until
        return nxt

    def lease(self, max_messages: int, lease: float, now: float) -> list[_Entry]:
        out: list[_Entry] = []
        while self.ready and len(out) < max_messages:
            e = self.ready.popleft()
            e.attempt += 1
            e.token = next(_tokens)
            e.lease_until = now + lease
            self.inflight[e.token] = e
            out.append(e)
        return out

    def pending(self) -> int:
        return (
            len(self.ready)
            + len(self.delayed)
            + len(self.inflight)
            + sum(len(q) for q in self.busy_keys.values())
        )

    def entries(self) -> list[_Entry]:
        items = [*self.inflight.values(), *self.ready, *(d[2] for d in self.delayed)]
        for q in self.busy_keys.values():
            items.extend(q)
        return sorted(items, key=lambda e: e.seq)


class _Topic:
    def __init__(self, name: str, retention: int) -> None:
        self.name = name
        self.log: deque[tuple[int, Message]] = deque(maxlen=retention)
        self.groups: dict[str, _Group] = {}
        self.count = 0


class _Broker:
    def __init__(self, retention: int) -> None:
        self.retention = retention
        self.topics: dict[str, _Topic] = {}
        self.seq = itertools.count(1)

    def topic(self, name: str) -> _Topic:
        t = self.topics.get(name)
        if t is None:
            t = self.topics[name] = _Topic(name, self.retention)
        return t


_shared: dict[str, _Broker] = {}


class _MemoryDelivery(Delivery):
    __slots__ = ("_group", "_token", "attempt", "message")

    def __init__(self, group: _Group, entry: _Entry) -> None:
        self._group = group
        self._token = entry.token
        self.message = entry.message
        self.attempt = entry.attempt

    async def ack(self) -> None:
        self._group.settle(self._token, None)

    async def nack(self, delay: float = 0.0) -> None:
        self._group.settle(self._token, delay)


class _MemorySubscription(Subscription):
    def __init__(self, transport: MemoryTransport, group: _Group, lease: float) -> None:
        self._transport = transport
        self._group = group
        self._lease = lease
        self._closed = False

    async def fetch(self, max_messages: int) -> list[Delivery]:
        group = self._group
        while not (self._closed or self._transport._closed):
            now = time.time()
            deadline = group.housekeep(now)
            if group.ready:
                return [
                    _MemoryDelivery(group, e) for e in group.lease(max_messages, self._lease, now)
                ]
            group.wakeup.clear()
            timeout = None if deadline is None else max(deadline - now, 0.0005)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(group.wakeup.wait(), timeout)
        return []

    async def close(self) -> None:
        self._closed = True
        self._group.wakeup.set()

    async def settle(
        self, acks: Sequence[Delivery], nacks: Sequence[tuple[Delivery, float]] = ()
    ) -> None:
        settle = self._group.settle
        for d in acks:
            assert isinstance(d, _MemoryDelivery)
            settle(d._token, None)
        for d, delay in nacks:
            assert isinstance(d, _MemoryDelivery)
            settle(d._token, delay)


class MemoryTransport(Transport):
    """RAM-only broker living in this process."""

    features = Features(persistent=False, multi_process=False, ordered=True, replay=True)

    def __init__(self, url: str = "memory://", *, retention: int = 10_000) -> None:
        parts = urlsplit(url)
        if parts.scheme != "memory":
            raise UnsupportedURL(f"not a memory URL: {url!r}; use 'memory://' or 'memory://NAME'")
        self.url = url
        name = parts.netloc + parts.path
        if name:
            self._broker = _shared.setdefault(name, _Broker(retention))
        else:
            self._broker = _Broker(retention)
        self._closed = False
        self._subs: list[_MemorySubscription] = []

    async def start(self) -> None:
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise TransportClosed(f"transport {self.url} is closed")

    async def publish(self, messages: Sequence[Message]) -> None:
        self._check()
        broker = self._broker
        now = time.time()
        for m in messages:
            topic = broker.topic(m.topic)
            seq = next(broker.seq)
            topic.log.append((seq, m))
            topic.count += 1
            for group in topic.groups.values():
                group.enqueue(_Entry(m, seq), now)

    def _group(self, topic: str, group: str, start: StartFrom, ordered: bool = False) -> _Group:
        t = self._broker.topic(topic)
        g = t.groups.get(group)
        if g is not None and ordered:
            g.make_ordered(time.time())
        if g is None:
            g = t.groups[group] = _Group(group)
            g.ordered = ordered
            if start == "earliest":
                now = time.time()
                for seq, m in t.log:
                    g.enqueue(_Entry(m, seq), now)
        return g

    async def subscribe(
        self,
        topic: str,
        group: str,
        *,
        ordered: bool = False,
        start: StartFrom = "latest",
        lease: float = 30.0,
    ) -> Subscription:
        self._check()
        g = self._group(topic, group, start, ordered)
        sub = _MemorySubscription(self, g, lease)
        self._subs.append(sub)
        return sub

    async def ensure_group(self, topic: str, group: str, *, start: StartFrom = "latest") -> None:
        self._check()
        self._group(topic, group, start)

    async def delete_group(self, topic: str, group: str) -> bool:
        t = self._broker.topics.get(topic)
        g = t.groups.pop(group, None) if t else None
        if g is None:
            return False
        g.wakeup.set()
        return True

    async def groups(self, topic: str) -> list[str]:
        t = self._broker.topics.get(topic)
        return sorted(t.groups) if t else []

    async def browse(self, topic: str, group: str, limit: int = 100) -> list[Message]:
        t = self._broker.topics.get(topic)
        g = t.groups.get(group) if t else None
        return [e.message for e in g.entries()[:limit]] if g else []

    async def purge(self, topic: str, group: str, ids: Sequence[str] | None = None) -> int:
        t = self._broker.topics.get(topic)
        g = t.groups.get(group) if t else None
        if g is None:
            return 0
        wanted = None if ids is None else set(ids)
        doomed = [e for e in g.entries() if wanted is None or e.message.id in wanted]
        if not doomed:
            return 0
        gone = {id(e) for e in doomed}
        waiting = {id(e) for q in g.busy_keys.values() for e in q}
        heads = [e for e in doomed if id(e) not in waiting]
        for e in doomed:
            g.inflight.pop(e.token, None)
        g.ready = deque(e for e in g.ready if id(e) not in gone)
        g.delayed = [d for d in g.delayed if id(d[2]) not in gone]
        heapq.heapify(g.delayed)
        for key in list(g.busy_keys):
            g.busy_keys[key] = deque(e for e in g.busy_keys[key] if id(e) not in gone)
        now = time.time()
        for e in heads:
            g.release_key(e, now)
        return len(doomed)

    async def stats(self) -> list[TopicStats]:
        return [
            TopicStats(
                topic=t.name,
                messages=t.count,
                groups=tuple(
                    GroupStats(group=g.name, pending=g.pending(), inflight=len(g.inflight))
                    for g in t.groups.values()
                ),
            )
            for t in sorted(self._broker.topics.values(), key=lambda t: t.name)
        ]

    async def close(self) -> None:
        self._closed = True
        for sub in self._subs:
            await sub.close()
        self._subs.clear()


def create(url: str, **options: object) -> MemoryTransport:
    """Transport factory for ``memory://`` URLs (option: ``retention``, an int)."""
    retention = options.pop("retention", 10_000)
    if options:
        raise UnsupportedURL(f"unknown memory transport options: {sorted(options)}")
    if not isinstance(retention, int):
        raise UnsupportedURL("retention must be an int")
    return MemoryTransport(url, retention=retention)
