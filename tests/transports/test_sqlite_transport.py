"""SQLite transport behaviour in one process (several transports on one file stand in for
several processes; real processes are in test_sqlite_processes.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tidings import Event
from tidings.errors import (
    BrokerUnavailable,
    EncodeError,
    TransportClosed,
    UnsupportedURL,
)
from tidings.message import Message
from tidings.transports import Delivery, Subscription, open_transport
from tidings.transports.sqlite import SqliteTransport, create

TOPIC = "orders"


def msg(n: int | str, *, topic: str = TOPIC, key: str | None = None, **kw: object) -> Message:
    return Message(id=f"m{n}", topic=topic, body=f'{{"n": "{n}"}}'.encode(), key=key, **kw)  # type: ignore[arg-type]


def ids(deliveries: Sequence[Delivery]) -> list[str]:
    return [d.message.id for d in deliveries]


async def nothing_within(sub: Subscription, seconds: float = 0.05) -> bool:
    """True when no message can be fetched for ``seconds`` (the fetch is cancelled)."""
    try:
        got = await asyncio.wait_for(sub.fetch(10), seconds)
    except TimeoutError:
        return True
    for d in got:
        await d.nack()
    return False


async def fetch_all(sub: Subscription, count: int) -> list[Delivery]:
    out: list[Delivery] = []
    while len(out) < count:
        out.extend(await asyncio.wait_for(sub.fetch(count - len(out)), 10))
    return out


def open_same_file(url: str) -> SqliteTransport:
    return create(url, poll_interval=0.002, max_poll_interval=0.02)


async def test_sqlite_url_relative_and_absolute_paths() -> None:
    assert create("sqlite:///relative/path.db").path == "relative/path.db"
    assert create("sqlite:///./tidings.db").path == "./tidings.db"
    assert create("sqlite:////abs/path.db").path == "/abs/path.db"
    assert create("sqlite:////abs/with%20space.db").path == "/abs/with space.db"
    transport = open_transport("sqlite:///x.db?busy_timeout=2&retention=0")
    assert isinstance(transport, SqliteTransport)
    assert transport.features.multi_process and transport.features.ordered


@pytest.mark.parametrize(
    ("url", "options", "fragment"),
    [
        ("sqlite://host/x.db", {}, "names a host"),
        ("sqlite:///", {}, "no file name"),
        ("sqlite:///dir/", {}, "no file name"),
        ("sqlite:///:memory:", {}, "memory://"),
        ("sqlite:///x.db", {"bogus": 1}, "unknown sqlite transport options"),
        ("sqlite:///x.db?retention=soon", {}, "retention"),
        ("sqlite:///x.db", {"busy_timeout": -1}, "negative"),
        ("memory://", {}, "not a sqlite URL"),
    ],
)
async def test_sqlite_url_rejects_bad_urls(
    url: str, options: dict[str, object], fragment: str
) -> None:
    with pytest.raises(UnsupportedURL, match=fragment):
        create(url, **options)


async def test_sqlite_roundtrip_keeps_every_field(sqlite_transport: SqliteTransport) -> None:
    sub = await sqlite_transport.subscribe(TOPIC, "billing")
    sent = Message(
        id="m1",
        topic=TOPIC,
        body=b"\x00\xffbinary",
        headers={"ce-type": "shop.OrderPlaced", "x-user": "ünïcode"},
        key="order-1",
        expires_at=time.time() + 60,
    )
    await sqlite_transport.publish([sent])
    [delivery] = await sub.fetch(10)
    assert delivery.message == sent
    assert delivery.attempt == 1
    await delivery.ack()
    assert await nothing_within(sub)
    [stats] = await sqlite_transport.stats()
    assert stats.groups[0].pending == 0
    await sub.close()


async def test_sqlite_publish_survives_reopen(sqlite_url: str) -> None:
    async with open_same_file(sqlite_url) as first:
        await first.ensure_group(TOPIC, "g")
        await first.publish([msg(1), msg(2)])
    async with open_same_file(sqlite_url) as second:
        sub = await second.subscribe(TOPIC, "g")
        assert ids(await fetch_all(sub, 2)) == ["m1", "m2"]


async def test_sqlite_two_groups_each_get_everything(sqlite_transport: SqliteTransport) -> None:
    a = await sqlite_transport.subscribe(TOPIC, "a")
    b = await sqlite_transport.subscribe(TOPIC, "b")
    await sqlite_transport.publish([msg(n) for n in range(20)])
    expected = [f"m{n}" for n in range(20)]
    assert ids(await fetch_all(a, 20)) == expected
    assert ids(await fetch_all(b, 20)) == expected
    assert await sqlite_transport.groups(TOPIC) == ["a", "b"]


async def test_sqlite_group_gets_only_messages_published_after_it_exists(
    sqlite_transport: SqliteTransport,
) -> None:
    await sqlite_transport.publish([msg("early")])
    sub = await sqlite_transport.subscribe(TOPIC, "late")
    await sqlite_transport.publish([msg("after")])
    assert ids(await sub.fetch(10)) == ["mafter"]


async def test_sqlite_earliest_replays_retained_messages(sqlite_transport: SqliteTransport) -> None:
    first = await sqlite_transport.subscribe(TOPIC, "first")
    await sqlite_transport.publish([msg(n) for n in range(3)])
    for d in await fetch_all(first, 3):
        await d.ack()  # acked by its only group, still retained
    replay = await sqlite_transport.subscribe(TOPIC, "replay", start="earliest")
    assert ids(await fetch_all(replay, 3)) == ["m0", "m1", "m2"]


async def test_sqlite_competing_consumers_never_share_a_lease(sqlite_url: str) -> None:
    async with open_same_file(sqlite_url) as one, open_same_file(sqlite_url) as two:
        subs = [await one.subscribe(TOPIC, "workers"), await two.subscribe(TOPIC, "workers")]
        await one.publish([msg(n) for n in range(200)])
        held: set[str] = set()
        seen: list[str] = []

        async def work(sub: Subscription) -> None:
            while len(seen) < 200:
                try:
                    batch = await asyncio.wait_for(sub.fetch(7), 0.5)
                except TimeoutError:
                    continue
                for d in batch:
                    assert d.message.id not in held, "two consumers hold one lease"
                    held.add(d.message.id)
                await asyncio.sleep(0)  # let the other consumer fetch while we hold these
                for d in batch:
                    held.discard(d.message.id)
                    seen.append(d.message.id)
                    await d.ack()

        await asyncio.wait_for(asyncio.gather(*(work(s) for s in subs)), 30)
        assert sorted(seen) == sorted(f"m{n}" for n in range(200))


async def test_sqlite_expired_lease_is_redelivered_with_next_attempt(
    sqlite_transport: SqliteTransport,
) -> None:
    short = await sqlite_transport.subscribe(TOPIC, "g", lease=0.2)
    await sqlite_transport.publish([msg(1)])
    [first] = await short.fetch(1)
    patient = await sqlite_transport.subscribe(TOPIC, "g")
    [second] = await asyncio.wait_for(patient.fetch(1), 10)  # after the lease expired
    assert (second.message.id, first.attempt, second.attempt) == ("m1", 1, 2)
    await first.ack()  # the expired lease no longer owns the message: a no-op
    [stats] = await sqlite_transport.stats()
    assert (stats.groups[0].pending, stats.groups[0].inflight) == (1, 1)
    await second.ack()
    [stats] = await sqlite_transport.stats()
    assert stats.groups[0].pending == 0


async def test_sqlite_nack_with_delay_redelivers_later(sqlite_transport: SqliteTransport) -> None:
    sub = await sqlite_transport.subscribe(TOPIC, "g")
    await sqlite_transport.publish([msg(1)])
    [first] = await sub.fetch(1)
    await first.nack(delay=1.0)
    await first.ack()  # a second decision is a no-op
    assert await nothing_within(sub)
    [again] = await asyncio.wait_for(sub.fetch(1), 10)
    assert (again.message.id, again.attempt) == ("m1", 2)
    await again.nack()
    [third] = await sub.fetch(1)
    assert third.attempt == 3


async def test_sqlite_deliver_at_holds_message_back(sqlite_transport: SqliteTransport) -> None:
    sub = await sqlite_transport.subscribe(TOPIC, "g")
    due = time.time() + 1.0
    await sqlite_transport.publish([msg("later", deliver_at=due), msg("now")])
    assert ids(await sub.fetch(10)) == ["mnow"]
    assert await nothing_within(sub)
    [later] = await asyncio.wait_for(sub.fetch(10), 10)
    assert later.message.id == "mlater" and later.message.deliver_at == due
    assert time.time() >= due


async def test_sqlite_ordered_leases_one_message_per_key(sqlite_url: str) -> None:
    async with open_same_file(sqlite_url) as one, open_same_file(sqlite_url) as two:
        sub = await one.subscribe(TOPIC, "g", ordered=True)
        other = await two.subscribe(TOPIC, "g", ordered=True)  # as if another process
        keyed = [("a1", "a"), ("b1", "b"), ("a2", "a"), ("n1", None), ("n2", None)]
        keyed += [("b2", "b"), ("a3", "a")]
        await one.publish([msg(n, key=k) for n, k in keyed])
        first = await sub.fetch(10)
        assert ids(first) == ["ma1", "mb1", "mn1", "mn2"]  # unkeyed messages are unordered
        assert await nothing_within(other)  # a and b are held by the first consumer
        a1, b1, *_ = first
        await a1.ack()
        assert ids(await other.fetch(10)) == ["ma2"]
        await b1.nack(delay=1.0)  # a nacked message blocks the rest of its key
        assert await nothing_within(sub)
        [b1_again] = await asyncio.wait_for(sub.fetch(10), 10)
        assert (b1_again.message.id, b1_again.attempt) == ("mb1", 2)
        await b1_again.ack()
        assert ids(await sub.fetch(10)) == ["mb2"]


async def test_sqlite_ordered_keeps_key_order_across_consumers(sqlite_url: str) -> None:
    async with open_same_file(sqlite_url) as one, open_same_file(sqlite_url) as two:
        subs = [
            await one.subscribe(TOPIC, "g", ordered=True),
            await two.subscribe(TOPIC, "g", ordered=True),
        ]
        sent = [msg(n, key=f"k{n % 5}") for n in range(150)]
        await one.publish(sent)
        handled: dict[str, list[str]] = {}
        busy: set[str] = set()

        async def work(sub: Subscription) -> None:
            while sum(map(len, handled.values())) < len(sent):
                try:
                    batch = await asyncio.wait_for(sub.fetch(3), 0.5)
                except TimeoutError:
                    continue
                for d in batch:
                    key = d.message.key
                    assert key is not None and key not in busy, "one key, two consumers"
                    busy.add(key)
                await asyncio.sleep(0)
                for d in batch:
                    busy.discard(d.message.key or "")
                    handled.setdefault(d.message.key or "", []).append(d.message.id)
                    await d.ack()

        await asyncio.wait_for(asyncio.gather(*(work(s) for s in subs)), 30)
        for key, got in handled.items():
            assert got == [m.id for m in sent if m.key == key]


async def test_sqlite_earliest_only_applies_when_the_group_is_created(
    sqlite_transport: SqliteTransport,
) -> None:
    await sqlite_transport.ensure_group(TOPIC, "g")
    await sqlite_transport.publish([msg(1)])
    sub = await sqlite_transport.subscribe(TOPIC, "g", start="earliest")
    [d] = await sub.fetch(10)
    await d.ack()
    again = await sqlite_transport.subscribe(TOPIC, "g", start="earliest")  # no replay
    assert await nothing_within(again)


async def test_sqlite_browse_and_purge(sqlite_transport: SqliteTransport) -> None:
    sub = await sqlite_transport.subscribe(TOPIC, "g")
    await sqlite_transport.publish([msg(n) for n in range(5)])
    assert [m.id for m in await sqlite_transport.browse(TOPIC, "g")] == [f"m{n}" for n in range(5)]
    assert [m.id for m in await sqlite_transport.browse(TOPIC, "g", limit=2)] == ["m0", "m1"]
    [stats] = await sqlite_transport.stats()
    assert stats.groups[0].inflight == 0  # browsing leases nothing
    assert await sqlite_transport.purge(TOPIC, "g", ["m1", "m3", "missing"]) == 2
    assert [m.id for m in await sqlite_transport.browse(TOPIC, "g")] == ["m0", "m2", "m4"]
    assert await sqlite_transport.purge(TOPIC, "g") == 3
    assert await sqlite_transport.browse(TOPIC, "g") == []
    assert await nothing_within(sub)
    assert await sqlite_transport.purge(TOPIC, "nobody") == 0
    assert await sqlite_transport.browse(TOPIC, "nobody") == []


async def test_sqlite_stats_count_pending_and_inflight(sqlite_transport: SqliteTransport) -> None:
    sub = await sqlite_transport.subscribe(TOPIC, "busy")
    await sqlite_transport.ensure_group(TOPIC, "idle")
    await sqlite_transport.publish([msg(n) for n in range(4)] + [msg(9, topic="other")])
    leased = await sub.fetch(3)
    await leased[0].ack()
    stats = {s.topic: s for s in await sqlite_transport.stats()}
    assert stats[TOPIC].messages == 4 and stats["other"].messages == 1
    groups = {g.group: (g.pending, g.inflight) for g in stats[TOPIC].groups}
    assert groups == {"busy": (3, 2), "idle": (4, 0)}
    assert stats["other"].groups == ()


async def test_sqlite_hostile_names_and_large_bodies(sqlite_transport: SqliteTransport) -> None:
    topic = 'it\'s "quoted"; DROP TABLE broker_messages;--'
    group = "日本語 ✓ '); --"
    sub = await sqlite_transport.subscribe(topic, group)
    big = Message(id="big", topic=topic, body=bytes(range(256)) * 40_000, key="k'ey")
    await sqlite_transport.publish([big])
    [d] = await sub.fetch(1)
    assert d.message == big
    assert await sqlite_transport.groups(topic) == [group]
    assert await sqlite_transport.purge(topic, group, ["big"]) == 1


async def test_sqlite_bad_input_fails_only_its_own_publish(
    sqlite_transport: SqliteTransport,
) -> None:
    sub = await sqlite_transport.subscribe(TOPIC, "g")
    bad = sqlite_transport.publish([msg(1, topic="lone \ud800 surrogate")])
    results = await asyncio.gather(bad, sqlite_transport.publish([msg(2)]), return_exceptions=True)
    assert isinstance(results[0], EncodeError) and results[1] is None
    assert ids(await sub.fetch(10)) == ["m2"]


async def test_sqlite_size_limits_are_the_apps_not_the_transports(sqlite_url: str) -> None:
    with pytest.raises(UnsupportedURL, match="max_message_size"):
        create(sqlite_url, max_message_size=10)


async def test_sqlite_concurrent_publishes_are_all_committed(
    sqlite_transport: SqliteTransport,
) -> None:
    sub = await sqlite_transport.subscribe(TOPIC, "g")
    await asyncio.gather(*(sqlite_transport.publish([msg(n)]) for n in range(300)))
    got = await fetch_all(sub, 300)
    assert sorted(ids(got)) == sorted(f"m{n}" for n in range(300))


async def test_sqlite_close_wakes_fetch_and_is_idempotent(sqlite_url: str) -> None:
    transport = open_same_file(sqlite_url)
    sub = await transport.subscribe(TOPIC, "g")
    other = await transport.subscribe(TOPIC, "h")
    waiting = asyncio.create_task(sub.fetch(10))
    await asyncio.sleep(0.01)
    await sub.close()
    assert await waiting == []
    waiting = asyncio.create_task(other.fetch(10))
    await asyncio.sleep(0.01)
    await asyncio.gather(transport.close(), transport.close())
    assert await waiting == []
    await transport.close()
    with pytest.raises(TransportClosed):
        await transport.publish([msg(1)])
    with pytest.raises(TransportClosed):
        await transport.stats()


async def test_sqlite_closed_subscription_leaves_leases_valid(
    sqlite_transport: SqliteTransport,
) -> None:
    sub = await sqlite_transport.subscribe(TOPIC, "g")
    await sqlite_transport.publish([msg(1), msg(2)])
    first, second = await sub.fetch(2)
    await sub.close()
    assert await sub.fetch(1) == []
    await first.ack()
    await second.nack()
    again = await sqlite_transport.subscribe(TOPIC, "g")
    assert [(d.message.id, d.attempt) for d in await again.fetch(10)] == [("m2", 2)]


async def test_sqlite_cancelled_fetch_leases_nothing(sqlite_transport: SqliteTransport) -> None:
    sub = await sqlite_transport.subscribe(TOPIC, "g")
    for n in range(20):  # cancel at different points of the fetch, racing its lease
        await sqlite_transport.publish([msg(n)])
        task = asyncio.create_task(sub.fetch(1))
        for _ in range(n % 5):
            await asyncio.sleep(0)
        task.cancel()
        try:
            got = await task  # the fetch finished before the cancel landed
        except asyncio.CancelledError:
            got = await asyncio.wait_for(sub.fetch(1), 10)
        [d] = got
        assert (d.message.id, d.attempt) == (f"m{n}", 1)  # handed back, not left leased
        await d.ack()


async def test_sqlite_garbage_collects_acked_messages(sqlite_url: str) -> None:
    async with create(sqlite_url, retention=0, gc_interval=0.01) as transport:
        sub = await transport.subscribe(TOPIC, "g")
        await transport.publish([msg(n) for n in range(50)])
        deliveries = await fetch_all(sub, 50)
        for d in deliveries[1:]:
            await d.ack()
        for _ in range(500):
            [stats] = await transport.stats()
            if stats.messages == 1:
                break
            await asyncio.sleep(0.01)
        assert stats.messages == 1  # the unacked one is kept
        assert [m.id for m in await transport.browse(TOPIC, "g")] == ["m0"]


async def test_sqlite_locked_database_raises_broker_unavailable(sqlite_url: str) -> None:
    async with create(sqlite_url, busy_timeout=0.05) as transport:
        path = sqlite_url.removeprefix("sqlite:///")
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(BrokerUnavailable, match="locked"):
                await transport.publish([msg(1)])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await transport.publish([msg(2)])  # usable again once the lock is gone


async def test_sqlite_unopenable_file_raises_broker_unavailable(tmp_path: Path) -> None:
    transport = create(f"sqlite:///{tmp_path / 'missing-dir' / 'broker.db'}")
    with pytest.raises(BrokerUnavailable, match="unable to open"):
        await transport.start()
    await transport.close()


async def test_sqlite_refuses_a_file_with_another_broker_layout(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE broker_messages (seq INTEGER PRIMARY KEY, body BLOB)")
    old.commit()
    old.close()
    transport = create(f"sqlite:///{path}")
    with pytest.raises(BrokerUnavailable, match="another layout"):
        await transport.start()
    await transport.close()


async def test_sqlite_delete_group_drops_its_backlog_and_stops_fan_out(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tidings.message import Message
    from tidings.transports import open_transport

    t = open_transport(f"sqlite:///{tmp_path}/g.db")
    await t.start()
    try:
        await t.ensure_group("topic", "gone")
        await t.ensure_group("topic", "kept")
        await t.publish([Message(id="1", topic="topic", body=b"{}")])
        assert await t.delete_group("topic", "gone") is True
        assert await t.delete_group("topic", "gone") is False
        await t.publish([Message(id="2", topic="topic", body=b"{}")])
        assert await t.groups("topic") == ["kept"]
        assert [m.id for m in await t.browse("topic", "kept")] == ["1", "2"]
    finally:
        await t.close()


async def test_sqlite_corrupt_row_is_dead_lettered_as_poison_and_the_rest_flows(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    import asyncio
    import sqlite3

    from tidings import App, Retry

    url = f"sqlite:///{tmp_path}/corrupt.db"
    app = App(url)
    handled: list[int] = []

    @app.subscribe("notes", group="g", retry=Retry(max_attempts=2, backoff=0.01))
    async def handle(event: Note) -> None:
        handled.append(event.n)

    await app.transport.start()
    await app.transport.ensure_group("notes", "g")
    await app.publish_many("notes", [Note(n=i) for i in range(3)])
    con = sqlite3.connect(tmp_path / "corrupt.db")
    with con:
        con.execute(
            "UPDATE broker_messages SET data = ?"
            " WHERE seq = (SELECT min(seq) FROM broker_messages)",
            (b"\xc1 this is not msgpack",),
        )
    con.close()
    try:
        await app.start()
        letters = []
        for _ in range(500):
            letters = await app.dead_letters.list()
            if letters and len(handled) == 2:
                break
            await asyncio.sleep(0.02)
        assert sorted(handled) == [1, 2]
        (letter,) = letters
        assert letter.reason == "poison" and letter.id.startswith("sqlite-row-")
        assert letter.message.body == b"\xc1 this is not msgpack"
    finally:
        await app.stop()


class Note(Event):
    __type__ = "sqlitetest.Note"
    n: int
