"""DESIGN §4.7–4.9: per-key ordering, bounded prefetch, graceful shutdown, lease expiry."""

from __future__ import annotations

import asyncio
import collections
import random

from tests.conformance.conftest import needs
from tests.conformance.events import Ping
from tests.conftest import wait_until
from tidings import App, Context, Retry


async def test_ordered_group_keeps_per_key_order_across_retries(app: App) -> None:
    needs(app.url, "ordered")
    seen: dict[str, list[int]] = collections.defaultdict(list)
    rng = random.Random(7)
    failed_once: set[int] = set()

    @app.subscribe(
        "orders",
        group="g",
        ordered=True,
        concurrency=8,
        retry=Retry(max_attempts=5, backoff=0.005, jitter=0),
    )
    async def handle(event: Ping, ctx: Context) -> None:
        if event.n not in failed_once and rng.random() < 0.1:
            failed_once.add(event.n)
            raise RuntimeError("transient")
        await asyncio.sleep(rng.random() / 1000)
        seen[ctx.key or ""].append(event.n)

    await app.start()
    keys = [f"k{i}" for i in range(16)]
    events = [Ping(n=i) for i in range(1000)]
    await app.publish_many("orders", events, key=lambda e: keys[e.n % 16])  # type: ignore[attr-defined]
    await wait_until(lambda: sum(map(len, seen.values())) == 1000, timeout=30, what="1,000 ordered")
    assert failed_once, "the test should exercise retries"
    for i, key in enumerate(keys):
        assert seen[key] == list(range(i, 1000, 16)), f"order broken for {key}"


async def test_ordered_key_waits_for_nacked_message(app: App) -> None:
    needs(app.url, "ordered")
    log: list[tuple[int, int]] = []

    @app.subscribe(
        "seq",
        group="g",
        ordered=True,
        concurrency=4,
        retry=Retry(max_attempts=3, backoff=0.1, jitter=0),
    )
    async def handle(event: Ping, ctx: Context) -> None:
        log.append((event.n, ctx.attempt))
        if event.n == 0 and ctx.attempt < 3:
            raise RuntimeError("not yet")

    await app.start()
    await app.publish_many("seq", [Ping(n=i) for i in range(3)], key="same")
    await wait_until(lambda: len(log) == 5, what="5 calls")
    assert log == [(0, 1), (0, 2), (0, 3), (1, 1), (2, 1)]


async def test_prefetch_bounds_inflight_messages_on_a_backlog(app: App) -> None:
    running = 0
    peak = 0
    done = 0

    @app.subscribe("backlog", group="g", concurrency=4, prefetch=8)
    async def handle(event: Ping) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        done += 1

    await app.transport.start()
    await app.transport.ensure_group("backlog", "g")
    await app.publish_many("backlog", [Ping(n=i) for i in range(600)])
    await app.start()
    inflight_seen = 0
    while done < 600:
        for topic in await app.transport.stats():
            for g in topic.groups:
                if topic.topic == "backlog" and g.group == "g":
                    inflight_seen = max(inflight_seen, g.inflight)
        await asyncio.sleep(0.005)
    assert peak <= 4
    assert inflight_seen <= 8


async def test_graceful_stop_finishes_inflight_and_releases_the_rest(broker_url: str) -> None:
    first = App(broker_url, grace=5.0)
    started = asyncio.Event()
    finished: list[int] = []
    release = asyncio.Event()

    @first.subscribe("jobs", group="workers", concurrency=1, prefetch=1)
    async def slow(event: Ping) -> None:
        started.set()
        await release.wait()
        finished.append(event.n)

    await first.start()
    await first.publish_many("jobs", [Ping(n=i) for i in range(5)])
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(first.stop())
    await asyncio.sleep(0.05)
    release.set()
    await stopping
    assert finished == [0]

    second = App(broker_url)
    rest: list[int] = []

    @second.subscribe("jobs", group="workers")
    async def fast(event: Ping) -> None:
        rest.append(event.n)

    try:
        await second.start()
        await wait_until(lambda: sorted(rest) == [1, 2, 3, 4], what="released messages")
    finally:
        await second.stop()


async def test_unacked_message_is_redelivered_after_the_lease(broker_url: str) -> None:
    transport_app = App(broker_url)
    try:
        await transport_app.transport.start()
        t = transport_app.transport
        sub = await t.subscribe("leases", "g", lease=0.2)
        await transport_app.publish("leases", Ping(n=1))
        (first,) = await sub.fetch(10)
        assert first.attempt == 1
        (again,) = await asyncio.wait_for(sub.fetch(10), 10)
        assert again.message.id == first.message.id and again.attempt == 2
        await first.ack()
        await again.ack()
        assert (await t.browse("leases", "g")) == []
        await sub.close()
    finally:
        await transport_app.stop()


async def test_cancelled_stop_during_idle_fetch_is_clean(app: App) -> None:
    @app.subscribe("idle", group="g")
    async def handle(event: Ping) -> None:
        pass

    await app.start()
    await asyncio.sleep(0.05)
    await app.stop()
    await app.stop()
