"""Commands (exactly one handler), causation/correlation propagation, middleware."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.conformance.events import Charge, Ping
from tests.conftest import wait_until
from tidings import (
    App,
    ConfigurationError,
    Context,
    Deduplicate,
    DuplicateHandler,
    Envelope,
    NoHandler,
    Tracing,
)


async def test_command_goes_to_its_one_handler(broker_url: str) -> None:
    workers = [App(broker_url) for _ in range(2)]
    charged: list[tuple[str, int]] = []
    for w in workers:

        @w.handle(Charge)
        async def charge(cmd: Charge) -> None:
            charged.append((cmd.account, cmd.cents))

    sender = App(broker_url)
    try:
        for w in workers:
            await w.start()
        for i in range(20):
            await sender.send(Charge(account=f"acc-{i}", cents=i))
        await wait_until(lambda: len(charged) == 20, what="20 commands")
        await asyncio.sleep(0.05)
        assert sorted(charged) == sorted((f"acc-{i}", i) for i in range(20))
    finally:
        for w in workers:
            await w.stop()
        await sender.stop()


async def test_command_without_handler_is_refused(app: App) -> None:
    with pytest.raises(NoHandler, match=r"no handler for command 'conformance\.Charge'"):
        await app.send(Charge(account="a", cents=1))


def test_second_handler_for_a_command_is_refused(broker_url: str) -> None:
    app = App(broker_url)

    @app.handle(Charge)
    async def one(cmd: Charge) -> None: ...

    with pytest.raises(DuplicateHandler, match="exactly one handler"):

        @app.handle(Charge)
        async def two(cmd: Charge) -> None: ...

    with pytest.raises(ConfigurationError, match="command topic"):

        @app.subscribe("commands.conformance.Charge", group="sneaky")
        async def three(cmd: Charge) -> None: ...


async def test_publish_in_handler_propagates_correlation_and_sets_causation(app: App) -> None:
    chain: dict[str, Envelope] = {}

    @app.subscribe("first", group="g")
    async def first(event: Ping, ctx: Context) -> None:
        chain["first"] = ctx.envelope
        await ctx.publish("second", Ping(n=event.n + 1))

    @app.subscribe("second", group="g")
    async def second(event: Envelope) -> None:
        chain["second"] = event

    await app.start()
    origin = await app.publish("first", Ping(n=1), correlation_id="conv-42")
    await wait_until(lambda: len(chain) == 2, what="two hops")
    assert chain["first"].id == origin
    assert chain["first"].correlationid == "conv-42"
    assert chain["second"].correlationid == "conv-42"
    assert chain["second"].causationid == origin


async def test_deduplicate_middleware_skips_a_redelivered_id(broker_url: str) -> None:
    dedupe = Deduplicate()
    app = App(broker_url, middleware=[dedupe])
    calls: list[int] = []

    @app.subscribe("once", group="g")
    async def handle(event: Ping) -> None:
        calls.append(event.n)

    try:
        await app.start()
        mid = await app.publish("once", Ping(n=1))
        await wait_until(lambda: calls == [1])
        duplicate = (await app.transport.browse("once", "g")) or None
        assert duplicate is None
        from tidings.message import Message

        body = b'{"n":1,"note":""}'
        await app.transport.publish(
            [Message(id=mid, topic="once", body=body, headers={"ce-type": "conformance.Ping"})]
        )
        await app.publish("once", Ping(n=2))
        await wait_until(lambda: calls == [1, 2], what="second id handled")
        assert dedupe.skipped == 1
    finally:
        await app.stop()


async def test_tracing_middleware_logs_ids_and_outcome(
    broker_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(broker_url, middleware=[Tracing()])
    done = asyncio.Event()

    @app.subscribe("traced", group="g")
    async def handle(event: Ping) -> None:
        done.set()

    try:
        with caplog.at_level(logging.INFO, logger="tidings.trace"):
            await app.start()
            mid = await app.publish("traced", Ping(n=1), correlation_id="corr-1")
            await asyncio.wait_for(done.wait(), 10)
            await wait_until(lambda: any(r.name == "tidings.trace" for r in caplog.records))
        record = next(r for r in caplog.records if r.name == "tidings.trace")
        assert record.message_id == mid  # type: ignore[attr-defined]
        assert record.correlation_id == "corr-1"  # type: ignore[attr-defined]
        assert record.outcome == "ok"  # type: ignore[attr-defined]
    finally:
        await app.stop()
