"""Cancellation edge cases: the watchdog, handlers raising CancelledError, stop() in cleanup."""

from __future__ import annotations

import asyncio
import time

from tests.conformance.conftest import needs
from tests.conformance.events import Ping
from tests.conftest import wait_until
from tidings import App, Context, Message, Retry


async def _letters(app: App, count: int) -> list:  # type: ignore[type-arg]
    for _ in range(1000):
        letters = await app.dead_letters.list()
        if len(letters) >= count:
            return letters
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} dead letters")


async def test_cancellation_slow_dead_letter_publish_is_not_a_handler_timeout(app: App) -> None:
    seen: list[int] = []

    @app.subscribe("slowdlq", group="g", concurrency=1, timeout=0.3, retry=Retry.never())
    async def handle(event: Ping) -> None:
        seen.append(event.n)
        await asyncio.sleep(0.2)
        if event.n == 0:
            raise ValueError("boom")

    await app.start()
    real = app.transport.publish

    async def slow_dead_letters(messages: list[Message]) -> None:
        if any(m.topic.endswith(".dlq") for m in messages):
            await asyncio.sleep(0.5)
        await real(messages)

    app.transport.publish = slow_dead_letters  # type: ignore[method-assign]
    await app.publish_many("slowdlq", [Ping(n=i) for i in range(3)])
    await wait_until(lambda: sorted(seen) == [0, 1, 2], what="the worker survives")
    (letter,) = await _letters(app, 1)
    assert letter.error_type == "ValueError"


async def test_cancellation_raised_by_the_handler_is_a_failed_attempt(app: App) -> None:
    attempts: list[tuple[int, int]] = []

    @app.subscribe("selfcancel", group="g", concurrency=1, retry=Retry(max_attempts=2, backoff=0))
    async def handle(event: Ping, ctx: Context) -> None:
        attempts.append((event.n, ctx.attempt))
        if event.n == 0:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.cancel()
            await future

    await app.start()
    await app.publish_many("selfcancel", [Ping(n=i) for i in range(3)])
    await wait_until(lambda: len(attempts) == 4, what="retry and the other messages")
    assert sorted(attempts) == [(0, 1), (0, 2), (1, 1), (2, 1)]
    (letter,) = await _letters(app, 1)
    assert letter.error_type == "CancelledError"


async def test_cancellation_stop_while_a_timed_out_handler_cleans_up_returns(
    broker_url: str,
) -> None:
    app = App(broker_url, grace=0.3)
    cleaning = asyncio.Event()

    @app.subscribe("cleanup", group="g", concurrency=1, timeout=0.2)
    async def handle(event: Ping) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cleaning.set()
            await asyncio.sleep(1.0)
            raise

    await app.start()
    await app.publish("cleanup", Ping(n=1))
    await asyncio.wait_for(cleaning.wait(), 10)
    started = time.monotonic()
    await asyncio.wait_for(app.stop(), 10)
    assert time.monotonic() - started < 5


async def test_cancellation_lone_delayed_message_wakes_an_idle_consumer(app: App) -> None:
    got: list[int] = []

    @app.subscribe("lonely", group="g")
    async def handle(event: Ping) -> None:
        got.append(event.n)

    await app.start()
    await asyncio.sleep(0.05)
    await app.publish("lonely", Ping(n=1), delay=0.1)
    await wait_until(lambda: got == [1], timeout=10, what="the delayed message")


async def test_cancellation_ordered_replay_of_a_backlog_keeps_key_order(broker_url: str) -> None:
    needs(broker_url, "ordered", "replay")
    app = App(broker_url)
    await app.publish_many("backlog", [Ping(n=i) for i in range(5)], key="k")
    try:
        sub = await app.transport.subscribe("backlog", "late", ordered=True, start="earliest")
        first = await sub.fetch(10)
        assert [d.message.headers.get("ce-partitionkey") for d in first] == ["k"]
        await sub.settle(first)
        second = await sub.fetch(10)
        assert len(second) == 1 and second[0].message.id != first[0].message.id
        await sub.settle(second)
        await sub.close()
    finally:
        await app.stop()
