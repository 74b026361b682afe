"""Deduplication by event id: a redelivered message that was already handled is skipped."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, Protocol

from tidings.app.context import Context
from tidings.app.handler import Handler

__all__ = ["DedupeStore", "Deduplicate", "MemoryDedupeStore"]


class DedupeStore(Protocol):
    """Remembers which (group, message id) pairs were handled."""

    async def seen(self, group: str, message_id: str) -> bool: ...

    async def mark(self, group: str, message_id: str) -> None: ...


class MemoryDedupeStore:
    """Process-local memory of the last ``capacity`` handled ids (LRU)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def seen(self, group: str, message_id: str) -> bool:
        return (group, message_id) in self._seen

    async def mark(self, group: str, message_id: str) -> None:
        self._seen[(group, message_id)] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


class Deduplicate:
    """Middleware that skips messages whose id this group already handled successfully.

    At-least-once delivery plus deduplication gives effectively-once handling, as far as
    the store remembers. Concurrent deliveries of one id are serialised so only one runs.
    A handler that raises is not marked, so the retry runs it again.
    """

    def __init__(self, store: DedupeStore | None = None) -> None:
        self.store: DedupeStore = store or MemoryDedupeStore()
        self._running: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}
        self.skipped = 0

    def __call__(self, handler: Handler) -> Handler:
        async def deduplicated(payload: Any, ctx: Context) -> None:
            key = (ctx.group, ctx.id)
            lock, users = self._running.setdefault(key, (asyncio.Lock(), [0]))
            users[0] += 1
            try:
                async with lock:
                    if await self.store.seen(ctx.group, ctx.id):
                        self.skipped += 1
                        return
                    await handler(payload, ctx)
                    await self.store.mark(ctx.group, ctx.id)
            finally:
                users[0] -= 1
                if users[0] == 0:
                    del self._running[key]

        return deduplicated
