"""The EventStore facade: URL choice, encoding of payloads, decode errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
import pytest

from tidings.errors import CorruptEvent, UnsupportedURL
from tidings.message.registry import TypeRegistry
from tidings.store import EventStore, NewEvent, RecordedEvent
from tidings.store.memory import MemoryRecorder
from tidings.store.sqlite import SqliteRecorder


class Opened(msgspec.Struct):
    __version__ = 3
    name: str


@dataclasses.dataclass
class Closed:
    reason: str


def test_eventstore_url_from_env_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_STORE_URL", "memory://")
    assert isinstance(EventStore().recorder, MemoryRecorder)
    monkeypatch.delenv("TIDINGS_STORE_URL")
    store = EventStore()
    assert isinstance(store.recorder, SqliteRecorder) and store.recorder.path == "./tidings.db"


def test_eventstore_unknown_scheme_is_rejected() -> None:
    with pytest.raises(UnsupportedURL, match="memory://"):
        EventStore("mongodb://x")


def test_eventstore_encode_payloads_and_pass_new_events() -> None:
    registry = TypeRegistry()
    registry.register(Opened, "acct.Opened")
    store = EventStore("memory://", registry=registry)
    new = store.encode(Opened("a"), {"k": "v"})
    assert (new.type, new.dataversion, new.metadata, new.data) == (
        "acct.Opened",
        3,
        {"k": "v"},
        b'{"name":"a"}',
    )
    assert len(new.id) == 36 and store.encode(Opened("a")).id != new.id
    raw = NewEvent(id="fixed", type="x", data=b"{}")
    assert store.encode(raw) is raw
    closed = store.encode(Closed("r"))
    assert closed.dataversion == 1 and closed.type.endswith("Closed")


async def test_eventstore_roundtrip_dataclass_payload(tmp_path: Path) -> None:
    registry = TypeRegistry()
    registry.register(Closed, "acct.Closed")
    async with EventStore(f"sqlite:///{tmp_path}/a.db", registry=registry) as store:
        await store.append("acct-1", [Closed("done")])
        (event,) = await store.read("acct-1")
        assert store.decode(event) == Closed("done")


def test_eventstore_decode_bad_json_names_stream_and_version() -> None:
    registry = TypeRegistry()
    registry.register(Opened, "acct.Opened")
    store = EventStore("memory://", registry=registry)
    bad = RecordedEvent(
        id="x",
        stream="acct-9",
        version=4,
        position=9,
        type="acct.Opened",
        data=b"[1]",
        dataversion=1,
    )
    with pytest.raises(CorruptEvent) as info:
        store.decode(bad)
    assert (info.value.stream, info.value.version) == ("acct-9", 4)
