"""DESIGN §4.1–4.3: durable publish, every group gets everything, competing consumers."""

from __future__ import annotations

import asyncio
import collections

from tests.conformance.conftest import needs
from tests.conformance.events import DataPing, Other, Ping, PydanticPing
from tests.conftest import wait_until
from tidings import App, Context, Envelope


async def test_publish_subscribe_delivers_every_id_payload_and_header(app: App) -> None:
    got: dict[str, tuple[int, str, dict[str, str]]] = {}

    @app.subscribe("pings", group="g")
    async def handle(event: Ping, ctx: Context) -> None:
        got[ctx.id] = (event.n, event.note, ctx.headers)

    await app.start()
    sent = {}
    for i in range(100):
        mid = await app.publish("pings", Ping(n=i, note=f"n{i}"), headers={"h": str(i)})
        sent[mid] = i
    await wait_until(lambda: len(got) == 100, what="100 messages")
    assert {mid: v[0] for mid, v in got.items()} == sent
    assert all(v[1] == f"n{v[0]}" and v[2] == {"h": str(v[0])} for v in got.values())


async def test_two_groups_each_receive_the_full_set(app: App) -> None:
    seen: dict[str, list[int]] = collections.defaultdict(list)

    for name in ("alpha", "beta"):

        @app.subscribe("pings", group=name)
        async def handle(event: Ping, ctx: Context) -> None:
            seen[ctx.group].append(event.n)

    await app.start()
    await app.publish_many("pings", [Ping(n=i) for i in range(200)])
    await wait_until(lambda: sum(map(len, seen.values())) == 400, what="both groups")
    assert sorted(seen["alpha"]) == sorted(seen["beta"]) == list(range(200))


async def test_many_topics_do_not_cross_talk(app: App) -> None:
    seen: dict[str, set[int]] = collections.defaultdict(set)
    topics = [f"topic-{i}" for i in range(20)]
    for topic in topics:

        @app.subscribe(topic, group="g")
        async def handle(event: Ping, ctx: Context) -> None:
            seen[ctx.topic].add(event.n)

    await app.start()
    for t, topic in enumerate(topics):
        await app.publish_many(topic, [Ping(n=t * 1000 + i) for i in range(100)])
    await wait_until(lambda: sum(map(len, seen.values())) == 2000, what="2,000 messages")
    for t, topic in enumerate(topics):
        assert seen[topic] == {t * 1000 + i for i in range(100)}


async def test_concurrent_publishers_and_competing_consumers_lose_nothing(broker_url: str) -> None:
    consumers = [App(broker_url, grace=2.0) for _ in range(3)]
    handled: collections.Counter[int] = collections.Counter()
    active = 0
    max_active_per_message: dict[int, int] = {}
    for c in consumers:

        @c.subscribe("work", group="workers", concurrency=8)
        async def handle(event: Ping) -> None:
            nonlocal active
            active += 1
            max_active_per_message[event.n] = max_active_per_message.get(event.n, 0) + 1
            await asyncio.sleep(0)
            handled[event.n] += 1
            active -= 1

    publisher = App(broker_url)
    try:
        for c in consumers:
            await c.start()

        async def produce(p: int) -> None:
            for i in range(50):
                await publisher.publish("work", Ping(n=p * 100 + i))

        await asyncio.gather(*(produce(p) for p in range(20)))
        await wait_until(lambda: sum(handled.values()) >= 1000, what="1,000 handled")
        assert set(handled) == {p * 100 + i for p in range(20) for i in range(50)}
        assert all(count == 1 for count in handled.values()), "a message was handled twice"
    finally:
        for c in consumers:
            await c.stop()
        await publisher.stop()


async def test_group_created_later_sees_only_new_messages_unless_earliest(broker_url: str) -> None:
    needs(broker_url, "replay")
    publisher = App(broker_url)
    await publisher.publish_many("log", [Ping(n=i) for i in range(10)])
    late: list[int] = []
    early: list[int] = []
    consumer = App(broker_url)

    @consumer.subscribe("log", group="late")
    async def on_late(event: Ping) -> None:
        late.append(event.n)

    @consumer.subscribe("log", group="replayer", start="earliest")
    async def on_early(event: Ping) -> None:
        early.append(event.n)

    try:
        await consumer.start()
        await publisher.publish("log", Ping(n=10))
        await wait_until(lambda: len(early) == 11 and len(late) == 1, what="replay + live")
        assert sorted(early) == list(range(11))
        assert late == [10]
    finally:
        await consumer.stop()
        await publisher.stop()


async def test_publish_returns_after_durable_accept(broker_url: str) -> None:
    needs(broker_url, "persistent")
    first = App(broker_url)
    await first.transport.start()
    await first.transport.ensure_group("durable", "g")
    await first.publish_many("durable", [Ping(n=i) for i in range(50)])
    await first.stop()

    got: list[int] = []
    second = App(broker_url)

    @second.subscribe("durable", group="g")
    async def handle(event: Ping) -> None:
        got.append(event.n)

    try:
        await second.start()
        await wait_until(lambda: len(got) == 50, what="messages after reopen")
        assert sorted(got) == list(range(50))
    finally:
        await second.stop()


async def test_payload_kinds_struct_dataclass_pydantic_dict_and_envelope(app: App) -> None:
    got: dict[str, object] = {}

    @app.subscribe("kinds", group="dc")
    async def dc(event: DataPing | PydanticPing | Ping | Other) -> None:
        got[type(event).__name__] = event

    @app.subscribe("raw", group="raw")
    async def raw(event: dict) -> None:  # type: ignore[type-arg]
        got["dict"] = event

    @app.subscribe("raw", group="env")
    async def env(event: Envelope) -> None:
        got["envelope"] = event

    await app.start()
    await app.publish("kinds", DataPing(n=1))
    await app.publish("kinds", PydanticPing(n=2))
    await app.publish("kinds", Ping(n=3))
    await app.publish("raw", {"free": "form"}, type="custom.Thing", subject="s1")
    await wait_until(lambda: len(got) == 5, what="all payload kinds")
    assert got["DataPing"] == DataPing(n=1)
    assert got["PydanticPing"] == PydanticPing(n=2)
    assert got["Ping"] == Ping(n=3)
    assert got["dict"] == {"free": "form"}
    envelope = got["envelope"]
    assert isinstance(envelope, Envelope)
    assert envelope.type == "custom.Thing" and envelope.subject == "s1"
    assert envelope.specversion == "1.0" and envelope.id and envelope.time.endswith("Z")
