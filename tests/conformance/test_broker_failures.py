"""DESIGN §4.4–4.6 and bad input: retries, dead letters, poison, ttl, delay, limits."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conformance.events import Ping
from tests.conftest import wait_until
from tidings import (
    App,
    ConfigurationError,
    Context,
    EncodeError,
    HandlerTimeout,
    Message,
    MessageTooLarge,
    Retry,
    UnsupportedURL,
)
from tidings.app import dlq_topic

FAST = Retry(max_attempts=3, backoff=0.01, jitter=0.0)


async def test_failing_handler_is_retried_then_dead_lettered_with_headers(app: App) -> None:
    attempts: list[int] = []

    @app.subscribe("pay", group="billing", retry=FAST)
    async def handle(event: Ping, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        raise ValueError(f"cannot bill {event.n}")

    await app.start()
    mid = await app.publish("pay", Ping(n=7))
    await wait_until(lambda: len(attempts) == 3, what="3 attempts")
    letters: list = []

    async def poll() -> None:
        letters[:] = await app.dead_letters.list()

    while not letters:
        await poll()
        await asyncio.sleep(0.01)
    assert attempts == [1, 2, 3]
    (letter,) = letters
    assert letter.id == mid
    assert letter.topic == "pay" and letter.group == "billing"
    assert letter.reason == "failed" and letter.attempts == 3
    assert letter.error_type == "ValueError" and letter.error == "cannot bill 7"
    assert "ValueError: cannot bill 7" in letter.traceback
    assert 0 < letter.first_failure <= letter.last_failure
    assert letter.message.topic == dlq_topic("pay", "billing") == "pay.billing.dlq"
    assert letter.message.body == b'{"n":7,"note":""}'


async def test_backoff_grows_between_attempts(app: App) -> None:
    times: list[float] = []

    @app.subscribe(
        "slow", group="g", retry=Retry(max_attempts=3, backoff=0.2, multiplier=2, jitter=0)
    )
    async def handle(event: Ping) -> None:
        times.append(time.monotonic())
        raise RuntimeError("again")

    await app.start()
    await app.publish("slow", Ping(n=1))
    await wait_until(lambda: len(times) == 3, what="3 attempts")
    assert times[1] - times[0] >= 0.2
    assert times[2] - times[1] >= 0.4


async def test_success_after_failures_is_acked_once(app: App) -> None:
    calls: list[int] = []

    @app.subscribe("flaky", group="g", retry=Retry(max_attempts=5, backoff=0.01))
    async def handle(event: Ping, ctx: Context) -> None:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("transient")

    await app.start()
    await app.publish("flaky", Ping(n=1))
    await wait_until(lambda: calls == [1, 2, 3], what="success on attempt 3")
    await asyncio.sleep(0.1)
    assert calls == [1, 2, 3]
    assert await app.dead_letters.list() == []


async def test_dead_letter_on_listed_errors_skips_remaining_attempts(app: App) -> None:
    calls: list[int] = []

    @app.subscribe("strict", group="g", retry=Retry(max_attempts=5, dead_letter_on=(KeyError,)))
    async def handle(event: Ping, ctx: Context) -> None:
        calls.append(ctx.attempt)
        raise KeyError("no such account")

    await app.start()
    await app.publish("strict", Ping(n=1))
    await wait_until(lambda: len(calls) == 1)
    letters = []
    while not letters:
        letters = await app.dead_letters.list()
        await asyncio.sleep(0.01)
    assert calls == [1] and letters[0].attempts == 1


@pytest.mark.parametrize(
    ("headers", "body", "reason_text"),
    [
        ({"ce-type": "conformance.Ping"}, b"{not json", "not valid JSON"),
        ({"ce-type": "nobody.KnowsThis"}, b"{}", "unknown event type"),
        ({"ce-type": "conformance.Ping"}, b'{"n": "seven"}', "does not match"),
        ({}, b'{"n": 1}', "no ce-type"),
        ({"ce-type": "conformance.Other"}, b'{"text": "x"}', "not one this handler accepts"),
    ],
    ids=["malformed-json", "unknown-type", "schema", "not-a-cloudevent", "unexpected-type"],
)
async def test_poison_messages_go_straight_to_dead_letters_and_consumer_keeps_running(
    app: App, headers: dict[str, str], body: bytes, reason_text: str
) -> None:
    handled: list[int] = []

    @app.subscribe("mixed", group="g", retry=Retry(max_attempts=5, backoff=0.01))
    async def handle(event: Ping) -> None:
        handled.append(event.n)

    await app.start()
    await app.transport.publish([Message(id="poison-1", topic="mixed", body=body, headers=headers)])
    await app.publish("mixed", Ping(n=1))
    await wait_until(lambda: handled == [1], what="good message after poison")
    letters = []
    while not letters:
        letters = await app.dead_letters.list()
        await asyncio.sleep(0.01)
    (letter,) = letters
    assert letter.id == "poison-1" and letter.reason == "poison" and letter.attempts == 1
    assert reason_text.lower() in letter.error.lower()


async def test_expired_message_is_dead_lettered_with_reason_expired(broker_url: str) -> None:
    publisher = App(broker_url)
    await publisher.transport.start()
    await publisher.transport.ensure_group("tick", "late")
    await publisher.publish("tick", Ping(n=1), ttl=0.05)
    await publisher.publish("tick", Ping(n=2), ttl=60)
    await asyncio.sleep(0.1)
    handled: list[int] = []
    consumer = App(broker_url)

    @consumer.subscribe("tick", group="late")
    async def handle(event: Ping) -> None:
        handled.append(event.n)

    try:
        await consumer.start()
        await wait_until(lambda: handled == [2], what="unexpired message")
        letters = []
        while not letters:
            letters = await consumer.dead_letters.list()
            await asyncio.sleep(0.01)
        assert [(d.reason, d.group) for d in letters] == [("expired", "late")]
    finally:
        await consumer.stop()
        await publisher.stop()


async def test_delayed_message_is_not_delivered_before_its_delay(app: App) -> None:
    handled_at: dict[int, float] = {}

    @app.subscribe("later", group="g")
    async def handle(event: Ping) -> None:
        handled_at[event.n] = time.time()

    await app.start()
    sent = time.time()
    await app.publish("later", Ping(n=1), delay=0.5)
    await app.publish("later", Ping(n=2))
    await wait_until(lambda: len(handled_at) == 2, what="both messages")
    assert handled_at[1] - sent >= 0.5


async def test_handler_hanging_past_its_timeout_is_cancelled_and_dead_lettered(app: App) -> None:
    started: list[int] = []

    @app.subscribe("hang", group="g", timeout=0.2, retry=Retry(max_attempts=2, backoff=0.01))
    async def handle(event: Ping, ctx: Context) -> None:
        started.append(ctx.attempt)
        await asyncio.sleep(3600)

    await app.start()
    await app.publish("hang", Ping(n=1))
    letters = []
    while not letters:
        letters = await app.dead_letters.list()
        await asyncio.sleep(0.02)
    assert started == [1, 2]
    assert letters[0].error_type == HandlerTimeout.__qualname__


async def test_payload_over_the_size_limit_fails_at_publish(broker_url: str) -> None:
    app = App(broker_url, max_message_size=1024)
    try:
        with pytest.raises(MessageTooLarge, match="over the limit of 1024 bytes"):
            await app.publish("big", Ping(n=1, note="x" * 2000))
        await app.publish("big", Ping(n=1, note="x" * 100))
    finally:
        await app.stop()


def test_unknown_url_scheme_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedURL, match=r"supported: .*memory://.*sqlite://"):
        App("carrierpigeon://coop/1")


async def test_dead_letter_publish_failure_loses_nothing(app: App) -> None:
    calls: list[int] = []

    @app.subscribe("fragile", group="g", retry=Retry(max_attempts=1, backoff=0.01, jitter=0))
    async def handle(event: Ping, ctx: Context) -> None:
        calls.append(ctx.attempt)
        raise ValueError("always")

    await app.start()
    real_publish = app.transport.publish
    broken = {"on": True}

    async def flaky_publish(messages):  # type: ignore[no-untyped-def]
        if broken["on"] and any(m.topic.endswith(".dlq") for m in messages):
            raise ConnectionError("dead-letter topic unavailable")
        await real_publish(messages)

    app.transport.publish = flaky_publish  # type: ignore[method-assign]
    await app.publish("fragile", Ping(n=1))
    await wait_until(lambda: len(calls) >= 2, what="redelivery after failed dead-lettering")
    broken["on"] = False
    letters = []
    while not letters:
        letters = await app.dead_letters.list()
        await asyncio.sleep(0.01)
    assert letters[0].reason == "failed"


@pytest.mark.parametrize(
    "topic",
    ["quo'te\"s; DROP TABLE x", "ünïcødé-话题-🙂", "t" * 1000, "a.b.c-d_e/f"],
    ids=["quotes", "unicode", "long", "punctuation"],
)
async def test_hostile_topic_names_round_trip(app: App, topic: str) -> None:
    got: list[int] = []

    @app.subscribe(topic, group="g'\"🙂")
    async def handle(event: Ping) -> None:
        got.append(event.n)

    await app.start()
    await app.publish(topic, Ping(n=1))
    await wait_until(lambda: got == [1], what="message on a hostile topic")


async def test_topic_name_that_is_not_text_is_refused(app: App) -> None:
    with pytest.raises(EncodeError, match="lone surrogate"):
        await app.publish("bad\ud800topic", Ping(n=1))
    with pytest.raises(ConfigurationError, match="non-empty"):
        await app.publish("", Ping(n=1))
