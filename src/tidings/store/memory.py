"""In-memory event store recorder (``memory://``): RAM only, for tests and demos.

Every method runs without awaiting between its check and its write, so appends from one
event loop are atomic and serialised; positions are handed out in commit order.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tidings.errors import StoreUnavailable, StreamDeleted
from tidings.store._common import (
    Notifier,
    category_of,
    check_expected,
    follow,
    resolve_duplicates,
    validate_append,
    validate_stream,
)
from tidings.store.base import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Recorder,
    Snapshot,
    StreamInfo,
)

__all__ = ["MemoryRecorder", "create"]


class MemoryRecorder(Recorder):
    """A recorder keeping every event in Python lists (``poll_interval``: subscriptions'
    safety poll; appends wake them at once)."""

    def __init__(self, *, poll_interval: float = 1.0) -> None:
        self.poll_interval = poll_interval
        self.events: list[RecordedEvent] = []  # index = position - 1
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._deleted: set[str] = set()
        self._ids: dict[str, tuple[str, int, int]] = {}
        self._snapshots: dict[str, dict[int, Snapshot]] = {}
        self._notifier = Notifier()
        self._started = False

    async def start(self) -> None:
        if self._notifier.closed:
            self._notifier = Notifier()
        self._started = True

    async def close(self) -> None:
        self._started = False
        self._notifier.close()

    def _check_open(self) -> None:
        if not self._started:
            raise StoreUnavailable("the memory recorder is not started (call start())")

    def _stream_events(self, stream: str) -> list[RecordedEvent]:
        validate_stream(stream)
        self._check_open()
        if stream in self._deleted:
            raise StreamDeleted(f"stream {stream!r} was deleted")
        return self._streams.get(stream, [])

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        validate_append(stream, events, expected_version)
        existing = self._stream_events(stream)
        current = existing[-1].version if existing else None
        found = {e.id: self._ids[e.id] for e in events if e.id in self._ids}
        if found:
            return resolve_duplicates(stream, events, expected_version, found)
        check_expected(stream, expected_version, current)
        now = time.time()
        version = -1 if current is None else current
        records = self._streams.setdefault(stream, existing)
        for event in events:
            version += 1
            position = len(self.events) + 1
            recorded = RecordedEvent(
                id=event.id,
                stream=stream,
                version=version,
                position=position,
                type=event.type,
                data=event.data,
                metadata=dict(event.metadata),
                dataversion=event.dataversion,
                recorded_at=now,
            )
            self.events.append(recorded)
            records.append(recorded)
            self._ids[event.id] = (stream, version, position)
        self._notifier.notify()
        return AppendResult(version, len(self.events))

    async def read(
        self,
        stream: str,
        from_version: int = 0,
        to_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        records = self._stream_events(stream)
        top = len(records) - 1 if to_version is None else min(to_version, len(records) - 1)
        selected = records[max(from_version, 0) : top + 1]
        if backwards:
            selected = selected[::-1]
        return selected if limit is None else selected[: max(limit, 0)]

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, category: str | None = None
    ) -> list[RecordedEvent]:
        self._check_open()
        start = max(from_position, 1) - 1
        if category is None:
            return self.events[start : start + max(limit, 0)]
        out: list[RecordedEvent] = []
        for event in self.events[start:]:
            if len(out) >= limit:
                break
            if category_of(event.stream) == category:
                out.append(event)
        return out

    def subscribe(
        self, from_position: int = 0, *, category: str | None = None
    ) -> AsyncIterator[RecordedEvent]:
        self._check_open()
        return follow(self.read_all, self._notifier, from_position, category, self.poll_interval)

    async def head(self) -> int:
        self._check_open()
        return len(self.events)

    def _info(self, stream: str) -> StreamInfo:
        records = self._streams.get(stream, [])
        return StreamInfo(
            stream=stream,
            version=records[-1].version if records else -1,
            events=len(records),
            deleted=stream in self._deleted,
            last_recorded_at=records[-1].recorded_at if records else 0.0,
        )

    async def stream_info(self, stream: str) -> StreamInfo | None:
        validate_stream(stream)
        self._check_open()
        if stream not in self._streams and stream not in self._deleted:
            return None
        return self._info(stream)

    async def streams(self, prefix: str = "", limit: int = 1000) -> list[StreamInfo]:
        self._check_open()
        names = sorted(n for n in self._streams.keys() | self._deleted if n.startswith(prefix))
        return [self._info(n) for n in names[: max(limit, 0)]]

    async def delete_stream(self, stream: str) -> None:
        validate_stream(stream)
        self._check_open()
        self._deleted.add(stream)

    async def save_snapshot(self, snapshot: Snapshot) -> None:
        validate_stream(snapshot.stream)
        self._check_open()
        stored = Snapshot(
            stream=snapshot.stream,
            version=snapshot.version,
            type=snapshot.type,
            data=snapshot.data,
            recorded_at=snapshot.recorded_at or time.time(),
        )
        self._snapshots.setdefault(snapshot.stream, {})[snapshot.version] = stored

    async def load_snapshot(self, stream: str, max_version: int | None = None) -> Snapshot | None:
        self._stream_events(stream)
        versions = [
            v for v in self._snapshots.get(stream, {}) if max_version is None or v <= max_version
        ]
        return self._snapshots[stream][max(versions)] if versions else None


def create(url: str, **options: Any) -> MemoryRecorder:
    """Recorder for ``memory://`` (the URL carries nothing else)."""
    return MemoryRecorder(**options)
