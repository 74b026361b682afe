"""The live like counter: ``LikeAdded`` events on topic ``likes`` and three subscriber groups.

* ``counter`` keeps likes per post (the read model a page would show);
* ``notifier`` announces every ``milestone``-th like of a post (and publishes a
  ``LikeMilestone`` event to ``likes.milestones``);
* ``flaky`` fails at random (``flaky_rate``) and always for the ``doomed`` posts, with
  ``Retry(max_attempts=3, backoff=0.05)``, so retries and dead letters show up.

Handlers are idempotent by message id (delivery is at-least-once) and count only events of
this run (header ``demo-run``), so a broker shared with earlier runs does not skew the
totals. The terminal UI is :mod:`tidings.cli.demo`; a web gateway can reuse
:class:`LikesDemo` as is.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
import uuid
from collections.abc import Sequence
from typing import Any

from tidings.app import App, Context, DeadLetter, Retry
from tidings.message import Event

__all__ = [
    "FLAKY_RETRY",
    "GROUPS",
    "MILESTONES",
    "RUN_HEADER",
    "TOPIC",
    "FlakyError",
    "LikeAdded",
    "LikeMilestone",
    "LikesDemo",
    "LikesState",
]

TOPIC = "likes"
MILESTONES = "likes.milestones"
GROUPS = ("counter", "notifier", "flaky")
RUN_HEADER = "demo-run"
FLAKY_RETRY = Retry(max_attempts=3, backoff=0.05)


class LikeAdded(Event):
    """A user liked a post."""

    __type__ = "demo.LikeAdded"
    post_id: str
    user: str


class LikeMilestone(Event):
    """A post reached a round number of likes."""

    __type__ = "demo.LikeMilestone"
    post_id: str
    likes: int


class FlakyError(Exception):
    """What the flaky group raises."""


@dataclasses.dataclass
class LikesState:
    """Everything the demo's handlers observed (this process, this run)."""

    run_id: str
    published: int = 0
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    counted_ids: set[str] = dataclasses.field(default_factory=set)
    duplicates: int = 0
    notifier_counts: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    notified_ids: set[str] = dataclasses.field(default_factory=set)
    milestones: int = 0
    notifications: collections.deque[str] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=6)
    )
    flaky_ids: set[str] = dataclasses.field(default_factory=set)
    flaky_failures: int = 0
    foreign: int = 0
    """Events of other runs (an earlier demo on the same broker) that were skipped."""

    @property
    def counted(self) -> int:
        return len(self.counted_ids)

    @property
    def notified(self) -> int:
        return len(self.notified_ids)

    @property
    def flaky_handled(self) -> int:
        return len(self.flaky_ids)


class LikesDemo:
    """The demo App with its handlers registered, plus a steady producer."""

    def __init__(
        self,
        url: str | None = None,
        *,
        posts: int = 20,
        flaky_rate: float = 0.3,
        doomed: Sequence[str] = ("post-13",),
        milestone: int = 100,
        seed: int | None = None,
    ) -> None:
        self.state = LikesState(run_id=uuid.uuid4().hex)
        self.app = App(url, source="tidings.demo")
        self.posts = [f"post-{i}" for i in range(1, posts + 1)]
        # Zipf-like popularity: post-1 is liked most, so the top posts and milestones show.
        self.weights = [1 / i for i in range(1, posts + 1)]
        self.flaky_rate = flaky_rate
        self.doomed = frozenset(doomed)
        self.milestone = milestone
        self.random = random.Random(seed)
        self._register()

    def _ours(self, ctx: Context) -> bool:
        if ctx.message.headers.get(RUN_HEADER) == self.state.run_id:
            return True
        self.state.foreign += 1
        return False

    def _register(self) -> None:
        app, state = self.app, self.state

        @app.subscribe(TOPIC, group="counter")
        async def count(event: LikeAdded, ctx: Context) -> None:
            if not self._ours(ctx):
                return
            if ctx.id in state.counted_ids:
                state.duplicates += 1
                return
            state.counted_ids.add(ctx.id)
            state.counts[event.post_id] += 1

        @app.subscribe(TOPIC, group="notifier")
        async def notify(event: LikeAdded, ctx: Context) -> None:
            if not self._ours(ctx) or ctx.id in state.notified_ids:
                return
            state.notified_ids.add(ctx.id)
            state.notifier_counts[event.post_id] += 1
            likes = state.notifier_counts[event.post_id]
            if likes % self.milestone == 0:
                await ctx.publish(MILESTONES, LikeMilestone(post_id=event.post_id, likes=likes))
                state.milestones += 1
                state.notifications.append(f"{event.post_id} reached {likes} likes")

        @app.subscribe(TOPIC, group="flaky", retry=FLAKY_RETRY)
        async def flaky(event: LikeAdded, ctx: Context) -> None:
            if not self._ours(ctx):
                return
            if event.post_id in self.doomed:
                state.flaky_failures += 1
                raise FlakyError(f"{event.post_id} always fails")
            if self.random.random() < self.flaky_rate:
                state.flaky_failures += 1
                raise FlakyError(f"random failure ({self.flaky_rate:.0%})")
            state.flaky_ids.add(ctx.id)

    # ------------------------------------------------------------------ producing

    def random_like(self) -> LikeAdded:
        post = self.random.choices(self.posts, self.weights)[0]
        return LikeAdded(post_id=post, user=f"user-{self.random.randint(1, 500)}")

    async def produce(self, rate: float, stop: asyncio.Event, tick: float = 0.05) -> None:
        """Publish about ``rate`` likes per second (in small batches) until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        headers = {RUN_HEADER: self.state.run_id}
        while not stop.is_set():
            due = int((loop.time() - started) * rate) - self.state.published
            if due > 0:
                batch = [self.random_like() for _ in range(min(due, 1000))]
                await self.app.publish_many(TOPIC, batch, key=_post_key, headers=headers)
                self.state.published += len(batch)
            try:
                async with asyncio.timeout(tick):
                    await stop.wait()
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ observing

    async def pending(self) -> dict[str, tuple[int, int]]:
        """``group -> (pending, in flight)`` on topic ``likes``, from the broker."""
        out = {g: (0, 0) for g in GROUPS}
        for topic in await self.app.transport.stats():
            if topic.topic == TOPIC:
                for g in topic.groups:
                    if g.group in out:
                        out[g.group] = (g.pending, g.inflight)
        return out

    def dead_lettered(self) -> int:
        """Dead letters the flaky group produced in this process."""
        return sum(c.dispatcher.dead_lettered for c in self.app.consumers if c.group == "flaky")

    def retries(self) -> int:
        """Failed attempts of the flaky group that were retried rather than dead-lettered."""
        return max(self.state.flaky_failures - self.dead_lettered(), 0)

    def snapshot(self, top: int = 8) -> dict[str, Any]:
        """The counters as plain JSON-able data (for a web page or an API)."""
        s = self.state
        return {
            "run": s.run_id,
            "published": s.published,
            "counted": s.counted,
            "notified": s.notified,
            "milestones": s.milestones,
            "notifications": list(s.notifications),
            "top_posts": [
                {"post_id": post, "likes": n, "notifier": s.notifier_counts[post]}
                for post, n in s.counts.most_common(top)
            ],
            "flaky": {
                "handled": s.flaky_handled,
                "retries": self.retries(),
                "dead_lettered": self.dead_lettered(),
            },
        }

    async def dead_letters(self) -> list[DeadLetter]:
        """This run's dead letters of the flaky group, oldest first."""
        letters = await self.app.dead_letters.list(TOPIC, "flaky", limit=1_000_000)
        return [d for d in letters if d.message.headers.get(RUN_HEADER) == self.state.run_id]

    async def drain(self, timeout: float, poll: float = 0.1) -> dict[str, tuple[int, int]]:
        """Wait until no group has anything pending (or ``timeout``); return the last reading."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            backlog = await self.pending()
            if all(p == 0 for p, _ in backlog.values()) or loop.time() >= deadline:
                return backlog
            await asyncio.sleep(poll)


def _post_key(event: object) -> str | None:
    return event.post_id if isinstance(event, LikeAdded) else None
