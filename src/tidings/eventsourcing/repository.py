"""Load and save aggregates through an :class:`~tidings.store.EventStore`.

``load`` rebuilds an aggregate by replaying its stream (from the latest usable snapshot),
optionally as of a past version or time; ``save`` appends the pending events with optimistic
concurrency (the version the aggregate was loaded at), and writes a snapshot every
``snapshot_every`` events; ``history`` is the audit trail.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from tidings.errors import CorruptEvent, StoreError, StreamNotFound
from tidings.eventsourcing.aggregate import Aggregate
from tidings.store.base import NO_STREAM, AppendResult, RecordedEvent, Snapshot

if TYPE_CHECKING:
    from tidings.store import EventStore

__all__ = ["HistoryEntry", "Repository"]

A = TypeVar("A", bound="Aggregate[Any]")

_log = logging.getLogger("tidings.eventsourcing")


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of an aggregate's audit trail: the decoded event and its stored record."""

    event: object
    record: RecordedEvent

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def position(self) -> int:
        return self.record.position

    @property
    def recorded_at(self) -> float:
        """Unix time (seconds) of the commit."""
        return self.record.recorded_at

    @property
    def metadata(self) -> dict[str, str]:
        return self.record.metadata

    @property
    def type(self) -> str:
        return self.record.type


class Repository(Generic[A]):
    """Loads and saves aggregates of one class.

    Args:
        store: a started :class:`~tidings.store.EventStore`.
        aggregate: the aggregate class.
        snapshot_every: write a snapshot each time the stream's event count crosses a
            multiple of this number, and load from them (``None``: neither write nor read
            snapshots). Snapshots only speed up loading; a missing, stale or unreadable
            snapshot falls back to a full replay.

    Concurrency: two tasks that load the same aggregate and both save get one success and
    one :class:`~tidings.errors.WrongExpectedVersion`; reload and retry the command.
    """

    def __init__(
        self, store: EventStore, aggregate: type[A], *, snapshot_every: int | None = None
    ) -> None:
        if snapshot_every is not None and snapshot_every < 1:
            raise ValueError("snapshot_every must be a positive number of events or None")
        self.store = store
        self.aggregate = aggregate
        self.snapshot_every = snapshot_every

    @property
    def _snapshot_type(self) -> str:
        return f"{self.aggregate.__qualname__}:v{self.aggregate.snapshot_version}"

    async def load(
        self, id: str, *, version: int | None = None, as_of: datetime | float | None = None
    ) -> A:
        """The aggregate ``id`` rebuilt from its events.

        ``version`` stops after that stream version; ``as_of`` (a ``datetime``, naive
        meaning UTC, or a Unix time) stops after the last event committed at or before that
        time. Give at most one. A snapshot is used when one exists at or below the target
        version.

        Raises :class:`~tidings.errors.StreamNotFound` when the aggregate has no events (at
        that version or time), ``StreamDeleted`` when its stream was deleted.
        """
        if version is not None and as_of is not None:
            raise ValueError("give either version or as_of, not both")
        stream = self.aggregate.stream_name(id)
        aggregate = self.aggregate(id)
        if as_of is not None:
            # The time decides the target version, so read up to it first; the snapshot then
            # saves the applying, not the reading.
            events = await self.store.read_as_of(stream, time=as_of)
            if not events:
                raise StreamNotFound(f"{stream!r} has no events at or before {as_of}")
            after = await self._restore_snapshot(aggregate, events[-1].version)
            self._replay(aggregate, [e for e in events if e.version > after])
            return aggregate
        if version is not None and version < 0:
            raise ValueError("version must be >= 0")
        if self.snapshot_every is None:
            after, events = -1, await self.store.read(stream, 0, version)
        else:
            snap, events = await self.store.read_with_snapshot(stream, version)
            after = self._use_snapshot(aggregate, snap)
            if snap is not None and after < 0:
                events = await self.store.read(stream, 0, version)
        if not events and after < 0:
            raise StreamNotFound(f"aggregate {id!r} not found: stream {stream!r} has no events")
        self._replay(aggregate, events)
        return aggregate

    async def save(
        self, aggregate: A, *, metadata: Mapping[str, str] | None = None
    ) -> AppendResult | None:
        """Append the aggregate's pending events; ``None`` when there were none.

        The append expects the stream to be at :attr:`Aggregate.saved_version` (``NO_STREAM``
        for a new aggregate) and raises :class:`~tidings.errors.WrongExpectedVersion` when
        another writer got there first; the aggregate keeps its pending events then.
        ``metadata`` (e.g. a correlation id) is stored with every event of this save.
        """
        pending = aggregate.pending
        if not pending:
            return None
        before = aggregate.saved_version
        expected = NO_STREAM if before < 0 else before
        result = await self.store.append(
            aggregate.stream,
            list(pending),
            expected,
            metadata=dict(metadata) if metadata else None,
        )
        aggregate.mark_saved()
        every = self.snapshot_every
        if every is not None and (result.version + 1) // every > (before + 1) // every:
            await self._save_snapshot(aggregate)
        return result

    async def history(self, id: str) -> list[HistoryEntry]:
        """The audit trail of aggregate ``id``: every event, decoded, with its record
        (version, global position, commit time, metadata). Raises ``StreamNotFound``."""
        stream = self.aggregate.stream_name(id)
        records = await self.store.read(stream)
        if not records:
            raise StreamNotFound(f"aggregate {id!r} not found: stream {stream!r} has no events")
        return [HistoryEntry(self.store.decode(r), r) for r in records]

    async def _save_snapshot(self, aggregate: A) -> None:
        snapshot = Snapshot(
            stream=aggregate.stream,
            version=aggregate.version,
            type=self._snapshot_type,
            data=aggregate.snapshot(),
        )
        try:
            await self.store.save_snapshot(snapshot)
        except StoreError:
            # The events are committed; a missing snapshot only costs a longer replay, so
            # failing the save here would make the caller retry a command that succeeded.
            _log.warning("could not save snapshot of %s", aggregate.stream, exc_info=True)

    async def _restore_snapshot(self, aggregate: A, max_version: int | None) -> int:
        """Restore the latest usable snapshot; return its version (``-1``: none used)."""
        if self.snapshot_every is None:
            return -1
        snap = await self.store.load_snapshot(aggregate.stream, max_version)
        return self._use_snapshot(aggregate, snap)

    def _use_snapshot(self, aggregate: A, snap: Snapshot | None) -> int:
        """Restore ``snap`` if usable; return its version (``-1``: not used)."""
        if snap is None or snap.type != self._snapshot_type:
            return -1
        try:
            aggregate.restore(snap.data)
        except Exception:  # an unreadable snapshot is an optimisation lost, not an error
            _log.warning("ignoring unreadable snapshot of %s", aggregate.stream, exc_info=True)
            aggregate.state = aggregate.initial_state()
            return -1
        aggregate.version = snap.version
        return snap.version

    def _replay(self, aggregate: A, records: list[RecordedEvent]) -> None:
        decode = self.store.decode
        for record in records:
            aggregate.apply(decode(record))
            # Versions are contiguous from 0, so apply() keeps ``version`` in step; assert it
            # cheaply to catch a store or snapshot that disagrees.
            if aggregate.version != record.version:
                raise CorruptEvent(
                    record.stream,
                    record.version,
                    f"replay reached version {aggregate.version} (stream or snapshot out of step)",
                )
