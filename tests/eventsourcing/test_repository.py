"""Repository: save/load with optimistic concurrency, snapshots, temporal loads, history."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from tidings.errors import StreamDeleted, StreamNotFound, WrongExpectedVersion
from tidings.eventsourcing import Aggregate, Repository, applies
from tidings.message import Event, encode_json, uuid7
from tidings.message.upcasting import Upcasters
from tidings.store import EventStore, NewEvent, Snapshot


class Opened(Event):
    __type__ = "test_repo.Opened"
    name: str


class Credited(Event):
    __type__ = "test_repo.Credited"
    __version__ = 2
    cents: int


class Ledger(msgspec.Struct):
    name: str = ""
    total: int = 0
    entries: int = 0


class Book(Aggregate[Ledger]):
    category = "book"

    def initial_state(self) -> Ledger:
        return Ledger()

    @classmethod
    def open(cls, name: str) -> Book:
        book = cls(uuid7())
        book.record(Opened(name=name))
        return book

    def credit(self, cents: int) -> None:
        self.record(Credited(cents=cents))

    @applies(Opened)
    def _opened(self, event: Opened) -> None:
        self.state.name = event.name

    @applies(Credited)
    def _credited(self, event: Credited) -> None:
        self.state.total += event.cents
        self.state.entries += 1


class BookV2(Book):
    snapshot_version = 2


async def _book_with_credits(repo: Repository[Book], credits: list[int]) -> Book:
    book = Book.open("cash")
    await repo.save(book)
    for cents in credits:
        book.credit(cents)
        await repo.save(book)
    return book


async def test_repository_save_then_load_rebuilds_state(store: EventStore) -> None:
    repo = Repository(store, Book)
    book = Book.open("cash")
    book.credit(5)
    book.credit(7)
    result = await repo.save(book)
    assert result is not None
    assert result.version == 2
    assert book.pending == ()
    loaded = await repo.load(book.id)
    assert loaded.state == Ledger(name="cash", total=12, entries=2)
    assert loaded.version == 2
    assert loaded.pending == ()


async def test_repository_save_without_pending_returns_none(store: EventStore) -> None:
    repo = Repository(store, Book)
    book = await _book_with_credits(repo, [1])
    assert await repo.save(book) is None


async def test_repository_load_missing_raises_stream_not_found(store: EventStore) -> None:
    with pytest.raises(StreamNotFound):
        await Repository(store, Book).load("nope")
    with pytest.raises(StreamNotFound):
        await Repository(store, Book).history("nope")


async def test_repository_concurrent_save_raises_wrong_expected_version(
    store: EventStore,
) -> None:
    repo = Repository(store, Book)
    book = await _book_with_credits(repo, [1])
    first, second = await repo.load(book.id), await repo.load(book.id)
    first.credit(10)
    second.credit(20)
    await repo.save(first)
    with pytest.raises(WrongExpectedVersion) as info:
        await repo.save(second)
    assert info.value.actual == 2
    assert second.pending == (Credited(cents=20),)
    assert (await repo.load(book.id)).state.total == 11


async def test_repository_new_aggregate_on_existing_stream_conflicts(store: EventStore) -> None:
    repo = Repository(store, Book)
    book = await _book_with_credits(repo, [])
    twin = Book(book.id)
    twin.record(Opened(name="twin"))
    with pytest.raises(WrongExpectedVersion):
        await repo.save(twin)


async def test_repository_load_as_of_version(store: EventStore) -> None:
    repo = Repository(store, Book)
    book = await _book_with_credits(repo, [1, 2, 4, 8])
    past = await repo.load(book.id, version=2)
    assert past.version == 2
    assert past.state.total == 3
    with pytest.raises(ValueError):
        await repo.load(book.id, version=1, as_of=time.time())


async def test_repository_load_as_of_time(store: EventStore) -> None:
    repo = Repository(store, Book)
    book = await _book_with_credits(repo, [1, 2])
    await asyncio.sleep(0.02)  # separates the commit times; nothing is asserted about timing
    moment = time.time()
    await asyncio.sleep(0.02)
    book.credit(100)
    await repo.save(book)
    then = await repo.load(book.id, as_of=moment)
    assert then.state.total == 3
    assert then.version == 2
    assert (await repo.load(book.id)).state.total == 103
    with pytest.raises(StreamNotFound):
        await repo.load(book.id, as_of=0.0)


async def test_repository_snapshot_every_n_events(store: EventStore) -> None:
    repo = Repository(store, Book, snapshot_every=3)
    book = await _book_with_credits(repo, [1] * 7)  # versions 0..7
    snap = await store.load_snapshot(book.stream)
    assert snap is not None
    assert snap.version == 5  # the count crossed 3 at version 2 and 6 at version 5
    assert (await store.load_snapshot(book.stream, max_version=4)) is not None
    plain = await Repository(store, Book).load(book.id)
    snapped = await repo.load(book.id)
    assert snapped.state == plain.state
    assert snapped.version == plain.version == 7


async def test_repository_load_uses_snapshot_at_or_below_target(store: EventStore) -> None:
    repo = Repository(store, Book, snapshot_every=100)
    book = await _book_with_credits(repo, [1, 1, 1, 1])  # versions 0..4
    # A snapshot whose state differs from the replay proves which path load() took.
    marked = Ledger(name="from-snapshot", total=1000, entries=3)
    await store.save_snapshot(
        Snapshot(stream=book.stream, version=3, type="Book:v1", data=encode_json(marked))
    )
    latest = await repo.load(book.id)
    assert latest.state == Ledger(name="from-snapshot", total=1001, entries=4)
    assert (await repo.load(book.id, version=3)).state == marked
    below = await repo.load(book.id, version=2)
    assert below.state == Ledger(name="cash", total=2, entries=2)
    assert (await Repository(store, Book).load(book.id)).state.total == 4


async def test_repository_ignores_snapshot_of_another_state_version(store: EventStore) -> None:
    repo = Repository(store, BookV2, snapshot_every=1)
    book = BookV2.open("cash")
    await repo.save(book)
    stale = Ledger(name="stale", total=99)
    await store.save_snapshot(
        Snapshot(stream=book.stream, version=0, type="BookV2:v1", data=encode_json(stale))
    )
    assert (await repo.load(book.id)).state.name == "cash"


async def test_repository_history_is_the_audit_trail(store: EventStore) -> None:
    repo = Repository(store, Book)
    book = Book.open("cash")
    await repo.save(book)
    book.credit(3)
    await repo.save(book, metadata={"correlationid": "c-1", "user": "ada"})
    trail = await repo.history(book.id)
    assert [e.event for e in trail] == [Opened(name="cash"), Credited(cents=3)]
    assert [e.version for e in trail] == [0, 1]
    assert trail[0].position < trail[1].position
    assert trail[1].metadata == {"correlationid": "c-1", "user": "ada"}
    assert trail[1].type == "test_repo.Credited"
    assert trail[0].recorded_at <= trail[1].recorded_at


async def test_repository_load_upcasts_old_event_versions(tmp_path: object) -> None:
    upcasters = Upcasters()

    @upcasters.register("test_repo.Credited", 1)
    def _euros_to_cents(data: dict[str, object]) -> dict[str, object]:
        return {"cents": int(str(data["euros"])) * 100}

    async with EventStore("memory://", upcasters=upcasters) as store:
        repo = Repository(store, Book)
        book = await _book_with_credits(repo, [5])
        old = NewEvent(id=uuid7(), type="test_repo.Credited", data=b'{"euros": "2"}', dataversion=1)
        await store.append(book.stream, [old], book.version)
        loaded = await repo.load(book.id)
        assert loaded.state.total == 205


def test_repository_rejects_bad_snapshot_every() -> None:
    with pytest.raises(ValueError):
        Repository(EventStore("memory://"), Book, snapshot_every=0)


async def test_repository_load_deleted_stream_raises_stream_deleted(store: EventStore) -> None:
    repo = Repository(store, Book, snapshot_every=1)
    book = await _book_with_credits(repo, [1])
    await store.delete_stream(book.stream)
    with pytest.raises(StreamDeleted):
        await repo.load(book.id)
    with pytest.raises(StreamDeleted):
        await repo.load(book.id, version=1)
