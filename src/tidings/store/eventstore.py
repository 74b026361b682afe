"""The event store users talk to: a recorder plus encoding, the type registry and upcasting."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from tidings.config import load_backend, resolve_url
from tidings.errors import CorruptEvent, TidingsError
from tidings.message.codec import decode_json, decode_payload, encode_json
from tidings.message.ids import uuid7, uuid7_many
from tidings.message.registry import TypeRegistry, default_registry
from tidings.message.upcasting import Upcasters, default_upcasters
from tidings.store._common import validate_stream
from tidings.store.base import (
    ANY,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Recorder,
    Snapshot,
    StreamInfo,
)

__all__ = ["BACKENDS", "EventStore"]

BACKENDS: dict[str, str] = {
    "memory": "tidings.store.memory",
    "sqlite": "tidings.store.sqlite",
    "postgresql": "tidings.store.postgres",
}
"""URL scheme → recorder module (each exposes ``create(url, **options) -> Recorder``)."""


class EventStore:
    """Append-only streams with optimistic concurrency, a global log and subscriptions.

    ``url`` picks the backend (``memory://``, ``sqlite:///path.db``, ``postgresql://…``);
    None reads ``TIDINGS_STORE_URL`` and falls back to ``sqlite:///./tidings.db``.
    ``options`` go to the backend (e.g. ``schema=`` for PostgreSQL, ``poll_interval=``).
    Use ``async with EventStore(url) as store:`` or ``start()`` / ``close()``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        registry: TypeRegistry = default_registry,
        upcasters: Upcasters = default_upcasters,
        **options: Any,
    ) -> None:
        self.url = resolve_url(url, "TIDINGS_STORE_URL")
        self.registry = registry
        self.upcasters = upcasters
        self._types: dict[type[Any], tuple[str, int]] = {}
        module = load_backend(self.url, BACKENDS, "event store")
        self.recorder: Recorder = module.create(self.url, **options)

    async def start(self) -> None:
        """Connect and create the tables if needed (idempotent)."""
        await self.recorder.start()

    async def close(self) -> None:
        """Close connections and end live subscriptions (idempotent)."""
        await self.recorder.close()

    async def __aenter__(self) -> EventStore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def encode(
        self,
        event: object,
        metadata: Mapping[str, str] | None = None,
        *,
        event_id: str | None = None,
    ) -> NewEvent:
        """A payload object as a :class:`NewEvent` (a NewEvent passes through unchanged)."""
        if isinstance(event, NewEvent):
            return event
        cls = type(event)
        info = self._types.get(cls)
        if info is None:
            info = self._types[cls] = (
                self.registry.name_of(cls),
                int(getattr(cls, "__version__", 1)),
            )
        return NewEvent(
            id=event_id or uuid7(),
            type=info[0],
            data=encode_json(event),
            metadata=dict(metadata) if metadata else {},
            dataversion=info[1],
        )

    async def append(
        self,
        stream: str,
        events: Sequence[object],
        expected_version: ExpectedVersion = ANY,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> AppendResult:
        """Append payload objects (or ``NewEvent``s) atomically; see :meth:`Recorder.append`.

        Payloads get a fresh UUIDv7 id each call, so only ``NewEvent``s with ids you keep
        make a retried append idempotent. ``metadata`` is attached to each payload event.
        """
        return await self.recorder.append(
            stream,
            [
                self.encode(e, metadata, event_id=i)
                for e, i in zip(events, uuid7_many(len(events)), strict=True)
            ],
            expected_version,
        )

    async def read(
        self,
        stream: str,
        from_version: int = 0,
        to_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of ``stream`` (empty if it never existed); ``StreamDeleted`` if tombstoned."""
        return await self.recorder.read(
            stream, from_version, to_version, backwards=backwards, limit=limit
        )

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, category: str | None = None
    ) -> list[RecordedEvent]:
        """The global log from ``from_position`` (inclusive), optionally one category."""
        return await self.recorder.read_all(from_position, limit, category=category)

    def subscribe(
        self, from_position: int = 0, *, category: str | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Catch up from ``from_position`` (inclusive) then follow live; resume from a
        checkpoint with ``from_position=last.position + 1``."""
        return self.recorder.subscribe(from_position, category=category)

    def decode(self, event: RecordedEvent) -> object:
        """The payload object: upcast to the registered class's ``__version__``, then decoded.

        Any failure (unknown type, bad JSON, missing upcaster, schema mismatch) raises
        :class:`CorruptEvent` naming the stream and version, with the cause chained.
        """
        try:
            cls = self.registry.resolve(event.type)
            target = int(getattr(cls, "__version__", 1))
            data: bytes = event.data
            if event.dataversion != target:
                raw = decode_json(data)
                if not isinstance(raw, dict):
                    raise TypeError(f"data is JSON {type(raw).__name__}, not an object")
                data = encode_json(
                    self.upcasters.upcast(event.type, event.dataversion, raw, target)
                )
            return decode_payload(data, cls)
        except (TidingsError, TypeError, ValueError, KeyError) as exc:
            raise CorruptEvent(event.stream, event.version, str(exc)) from exc

    async def read_as_of(
        self,
        stream: str,
        *,
        version: int | None = None,
        time: datetime | float | None = None,
    ) -> list[RecordedEvent]:
        """The events that made ``stream`` as of ``version`` (inclusive) and/or ``time``.

        ``time`` is a Unix time or a datetime (naive means UTC); it keeps the events whose
        commit time (``recorded_at``) is at or before it.
        """
        events = await self.recorder.read(stream, 0, version)
        if time is None:
            return events
        if isinstance(time, datetime):
            moment = (time if time.tzinfo else time.replace(tzinfo=UTC)).timestamp()
        else:
            moment = float(time)
        return list(itertools.takewhile(lambda e: e.recorded_at <= moment, events))

    async def head(self) -> int:
        """Global position of the last committed event (0 when empty)."""
        return await self.recorder.head()

    async def stream_info(self, stream: str) -> StreamInfo | None:
        return await self.recorder.stream_info(stream)

    async def streams(self, prefix: str = "", limit: int = 1000) -> list[StreamInfo]:
        return await self.recorder.streams(prefix, limit)

    async def delete_stream(self, stream: str) -> None:
        """Tombstone ``stream``; its events stay in the global log as an audit trail."""
        await self.recorder.delete_stream(stream)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        validate_stream(snapshot.stream)
        await self.recorder.save_snapshot(snapshot)

    async def read_with_snapshot(
        self, stream: str, to_version: int | None = None
    ) -> tuple[Snapshot | None, list[RecordedEvent]]:
        """The latest snapshot at or below ``to_version`` and the events after it (one
        round trip where the backend allows)."""
        return await self.recorder.read_with_snapshot(stream, to_version)

    async def load_snapshot(self, stream: str, max_version: int | None = None) -> Snapshot | None:
        return await self.recorder.load_snapshot(stream, max_version)
