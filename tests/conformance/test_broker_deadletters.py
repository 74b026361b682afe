"""DESIGN §4.10: dead letters can be listed, shown, replayed (all or by id) and purged."""

from __future__ import annotations

import asyncio

import pytest

from tests.conformance.events import Ping
from tests.conftest import wait_until
from tidings import App, Context, Retry, TidingsError


async def _letters(app: App, count: int) -> list:  # type: ignore[type-arg]
    letters: list = []  # type: ignore[type-arg]
    for _ in range(1000):
        letters = await app.dead_letters.list()
        if len(letters) >= count:
            return letters
        await asyncio.sleep(0.01)
    pytest.fail(f"expected {count} dead letters, got {len(letters)}")


async def test_list_show_replay_by_id_and_purge(app: App) -> None:
    broken = {"on": True}
    handled: list[int] = []
    other_group: list[int] = []

    @app.subscribe("tasks", group="worker", retry=Retry.never())
    async def handle(event: Ping) -> None:
        if broken["on"]:
            raise LookupError(f"missing {event.n}")
        handled.append(event.n)

    @app.subscribe("tasks", group="auditor")
    async def audit(event: Ping) -> None:
        other_group.append(event.n)

    await app.start()
    ids = [await app.publish("tasks", Ping(n=i)) for i in range(4)]
    letters = await _letters(app, 4)
    assert {d.id for d in letters} == set(ids)
    assert ("tasks.worker.dlq", 4) in await app.dead_letters.queues()
    assert ("tasks.auditor.dlq", 0) in await app.dead_letters.queues()

    shown = await app.dead_letters.show(ids[2])
    assert shown.reason == "failed" and shown.error == "missing 2" and shown.group == "worker"
    with pytest.raises(TidingsError, match="no dead letter"):
        await app.dead_letters.show("nope")

    broken["on"] = False
    assert await app.dead_letters.replay(ids=[ids[0]]) == 1
    await wait_until(lambda: handled == [0], what="replayed message handled")
    assert len(await app.dead_letters.list()) == 3

    assert await app.dead_letters.replay(topic="tasks", group="worker") == 3
    await wait_until(lambda: sorted(handled) == [0, 1, 2, 3], what="all replayed")
    await asyncio.sleep(0.05)
    assert sorted(other_group) == [0, 1, 2, 3], "replay must address only the failed group"
    assert await app.dead_letters.list() == []

    broken["on"] = True
    await app.publish("tasks", Ping(n=9))
    await _letters(app, 1)
    assert await app.dead_letters.purge() == 1
    assert await app.dead_letters.list() == []


async def test_dead_letters_of_two_groups_are_kept_apart(app: App) -> None:
    for name in ("a", "b"):

        @app.subscribe("shared", group=name, retry=Retry.never())
        async def handle(event: Ping, ctx: Context) -> None:
            raise RuntimeError(ctx.group)

    await app.start()
    await app.publish("shared", Ping(n=1))
    letters = await _letters(app, 2)
    assert sorted((d.group, d.error) for d in letters) == [("a", "a"), ("b", "b")]
    assert await app.dead_letters.purge(group="a") == 1
    assert [d.group for d in await app.dead_letters.list()] == ["b"]
