"""A running subscription: one fetch loop, ``concurrency`` workers, bounded prefetch, drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tidings.app.dispatch import Dispatcher
from tidings.transports.base import Delivery, StartFrom, Subscription

__all__ = ["Consumer"]

log = logging.getLogger("tidings.consumer")


class Consumer:
    """Pulls deliveries for one subscription and feeds them to workers.

    At most ``prefetch`` deliveries (default ``concurrency``) are leased at once (fetched but
    not settled), so memory stays flat on any backlog (DESIGN §4.8). A fetched batch is
    split among the idle workers; each handles its chunk in order, which amortises the
    hand-off when handlers are fast and keeps ``concurrency`` handlers busy when they are
    slow. Stopping stops fetching, lets in-flight handlers finish for ``grace`` seconds,
    then cancels them and releases their messages.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        ordered: bool,
        start: StartFrom,
        concurrency: int,
        prefetch: int | None = None,
        lease: float | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.ordered = ordered
        self.start_from: StartFrom = start
        self.concurrency = concurrency
        self.prefetch = max(prefetch or concurrency, concurrency)
        self._rounds = -(-self.prefetch // concurrency)
        if lease is None:
            # Long enough for a prefetched message to wait for a worker, then run.
            rounds = self._rounds + 1 if self._rounds > 1 else 1
            lease = (dispatcher.timeout or 50.0) * rounds + 10.0
        self.lease = lease
        self._free = self.prefetch
        self._freed = asyncio.Event()
        self._idle_workers = concurrency
        self._queue: asyncio.Queue[list[Delivery]] = asyncio.Queue()
        self._subscription: Subscription | None = None
        self._fetcher: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._settler: asyncio.Task[None] | None = None
        self._acks: list[Delivery] = []
        self._nacks: list[tuple[Delivery, float]] = []
        self._settle_wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def topic(self) -> str:
        return self.dispatcher.topic

    @property
    def group(self) -> str:
        return self.dispatcher.group

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._fetcher is not None

    async def start(self) -> None:
        """Join the group and start fetching (once)."""
        if self.running:
            return
        d = self.dispatcher
        self._subscription = await d.app.transport.subscribe(
            d.topic, d.group, ordered=self.ordered, start=self.start_from, lease=self.lease
        )
        name = f"tidings:{d.topic}/{d.group}"
        self._fetcher = asyncio.create_task(self._fetch_loop(), name=name + ":fetch")
        self._settler = asyncio.create_task(self._settle_loop(), name=name + ":settle")
        if d.watchdog is not None:
            self._watchdog = asyncio.create_task(d.watchdog.run(), name=name + ":watchdog")
        self._workers = [
            asyncio.create_task(self._work(), name=f"{name}:worker{i}")
            for i in range(self.concurrency)
        ]

    async def _fetch_loop(self) -> None:
        assert self._subscription is not None
        while True:
            while self._free <= 0:
                self._freed.clear()
                await self._freed.wait()
            try:
                batch = await self._subscription.fetch(self._free)
            except Exception as exc:
                log.error("fetch failed on %s/%s: %r; retrying in 1s", self.topic, self.group, exc)
                await asyncio.sleep(1.0)
                continue
            if not batch:
                return
            self._free -= len(batch)
            self._idle.clear()
            # Idle workers share the batch in chunks of at most ⌈prefetch / concurrency⌉;
            # with every worker busy, messages queue one by one for the first worker free.
            # Either way no message waits longer than the default lease allows for.
            idle = self._idle_workers
            size = min(-(-len(batch) // idle), self._rounds) if idle > 0 else 1
            for i in range(0, len(batch), size):
                self._queue.put_nowait(batch[i : i + size])

    async def _work(self) -> None:
        process = self.dispatcher.process
        task = asyncio.current_task()
        assert task is not None
        while True:
            chunk = await self._queue.get()
            self._idle_workers -= 1
            i = 0
            try:
                for i, delivery in enumerate(chunk):  # noqa: B007
                    try:
                        outcome = await process(delivery, task)
                    except Exception:
                        log.exception("unexpected error handling %s", delivery.message.id)
                        outcome = 1.0
                    if outcome is None:
                        self._acks.append(delivery)
                    else:
                        self._nacks.append((delivery, outcome))
                    self._settle_wakeup.set()
            except asyncio.CancelledError:
                self._nacks.extend((d, 0.0) for d in chunk[i:])
                raise
            finally:
                self._idle_workers += 1

    async def _settle_loop(self) -> None:
        """Settle what the workers decided, many at a time; free prefetch slots after."""
        while True:
            await self._settle_wakeup.wait()
            self._settle_wakeup.clear()
            await self._settle_now()

    async def _settle_now(self) -> None:
        acks, nacks = self._acks, self._nacks
        if not (acks or nacks):
            return
        self._acks, self._nacks = [], []
        assert self._subscription is not None
        try:
            await self._subscription.settle(acks, nacks)
        except Exception as exc:
            log.error(
                "could not settle %d message(s) on %s/%s: %r; they return after their lease",
                len(acks) + len(nacks),
                self.topic,
                self.group,
                exc,
            )
        self._free += len(acks) + len(nacks)
        self._freed.set()
        if self._free == self.prefetch:
            self._idle.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop fetching; finish in-flight work within ``grace`` seconds, release the rest."""
        if self._subscription is not None:
            await self._subscription.close()
        if self._fetcher is not None:
            self._fetcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetcher
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()
        tasks = [*self._workers, *([self._watchdog] if self._watchdog else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._settler is not None:
            self._settler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._settler
            self._settler = None
        while not self._queue.empty():
            self._nacks.extend((d, 0.0) for d in self._queue.get_nowait())
        await self._settle_now()
        self._workers = []
        self._fetcher = None
        self._watchdog = None
