"""The event store contract (DESIGN §5): types shared by every backend.

A backend is a :class:`Recorder` (one module per database: ``memory``, ``sqlite``,
``postgres``) that stores and reads raw :class:`NewEvent` / :class:`RecordedEvent` rows.
:class:`tidings.store.EventStore` wraps a recorder with encoding, the type registry and
upcasting; user code talks to ``EventStore`` only.

Positions and versions:

* Stream versions are contiguous from 0 (the first event of a stream has version 0).
* Global positions start at 1 and strictly increase in commit order; ``0`` means
  "before the first event". Readers of the global log never skip an event that commits
  late with a lower position.
* ``from_version`` / ``from_position`` arguments are inclusive.
* A stream's category is the part of its name before the first ``-`` (``account-42`` is in
  category ``account``); a name without ``-`` has no category.
* Event ids are unique in the whole store. Re-appending the same ids at the same place is
  idempotent; the same ids anywhere else raise :class:`DuplicateEventId`.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Sequence

import msgspec

from tidings.errors import DuplicateEventId

__all__ = [
    "ANY",
    "EXISTS",
    "NO_STREAM",
    "AppendResult",
    "DuplicateEventId",
    "ExpectedVersion",
    "NewEvent",
    "RecordedEvent",
    "Recorder",
    "Snapshot",
    "StreamInfo",
]


class _Expect(enum.Enum):
    ANY = "any"
    NO_STREAM = "no_stream"
    EXISTS = "exists"

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__


ANY = _Expect.ANY
"""Append whatever the stream's version is."""
NO_STREAM = _Expect.NO_STREAM
"""Append only if the stream does not exist yet."""
EXISTS = _Expect.EXISTS
"""Append only if the stream already has events."""

ExpectedVersion = _Expect | int
"""``ANY``, ``NO_STREAM``, ``EXISTS`` or the exact current version (last event's version)."""


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event about to be appended (already encoded)."""

    id: str
    type: str
    data: bytes
    metadata: dict[str, str] = {}
    dataversion: int = 1


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as stored: its stream version, global position and commit time."""

    id: str
    stream: str
    version: int
    position: int
    type: str
    data: bytes
    metadata: dict[str, str] = {}
    dataversion: int = 1
    recorded_at: float = 0.0
    """Unix time (seconds) of the commit."""


class AppendResult(msgspec.Struct, frozen=True):
    """Outcome of an append: the stream's new version and the last event's global position."""

    version: int
    position: int


class StreamInfo(msgspec.Struct, frozen=True):
    """A stream's name, current version (last event's version), event count and state."""

    stream: str
    version: int
    events: int
    deleted: bool = False
    last_recorded_at: float = 0.0


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A stored aggregate state at a stream version."""

    stream: str
    version: int
    type: str
    data: bytes
    recorded_at: float = 0.0


class Recorder(abc.ABC):
    """One database backend. Every method is safe to call concurrently from one event loop."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and create tables if needed. Idempotent. Raises ``StoreUnavailable``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close connections and end live subscriptions. Idempotent."""

    @abc.abstractmethod
    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult:
        """Atomically append ``events``; raises ``WrongExpectedVersion`` (with ``actual``).

        Re-appending events whose ids are already stored in ``stream`` at the same place is
        idempotent: it returns the original result and writes nothing. The same ids at
        another place raise ``DuplicateEventId``. Raises ``StreamDeleted`` for a tombstoned
        stream, ``InvalidStreamName``, and ``ValueError`` for an empty ``events``.
        Concurrent appends from one loop are safe; a cancelled append may still commit.
        """

    @abc.abstractmethod
    async def read(
        self,
        stream: str,
        from_version: int = 0,
        to_version: int | None = None,
        *,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of ``stream`` with ``from_version <= version <= to_version``.

        In version order (descending with ``backwards``), at most ``limit`` of them. A stream
        that never existed reads as ``[]``; a deleted one raises ``StreamDeleted``; a stored
        row that cannot be read raises ``CorruptEvent`` (never skipped).
        """

    @abc.abstractmethod
    async def read_all(
        self, from_position: int = 0, limit: int = 1000, *, category: str | None = None
    ) -> list[RecordedEvent]:
        """Events in global order with ``position >= from_position``.

        ``category`` keeps only streams of that category (name part before the first ``-``,
        so ``category="account"`` reads ``account-42``, ``account-7-x``, not ``accounts-1``).
        Events of deleted streams stay in the global log (audit trail).
        Never returns an event past a position whose commit is still in doubt.
        """

    @abc.abstractmethod
    def subscribe(
        self, from_position: int = 0, *, category: str | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Catch up from ``from_position``, then follow live appends: no gap, no duplicate.

        Events come in strictly increasing position order. The iterator ends when the
        recorder closes; close it early with ``aclose()`` (or ``contextlib.aclosing``).
        """

    @abc.abstractmethod
    async def head(self) -> int:
        """Global position of the last committed event (0 when empty)."""

    @abc.abstractmethod
    async def stream_info(self, stream: str) -> StreamInfo | None:
        """The stream's version and count, or None if it never existed."""

    @abc.abstractmethod
    async def streams(self, prefix: str = "", limit: int = 1000) -> list[StreamInfo]:
        """Streams whose name starts with ``prefix``, by name."""

    @abc.abstractmethod
    async def delete_stream(self, stream: str) -> None:
        """Tombstone ``stream``: its reads and appends raise ``StreamDeleted``.

        Its events stay in the global log (``read_all``, subscriptions) as an audit trail,
        so global positions never change. Deleting a stream that never existed reserves
        the name. Idempotent.
        """

    @abc.abstractmethod
    async def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store a snapshot (replacing one at the same stream and version)."""

    @abc.abstractmethod
    async def load_snapshot(self, stream: str, max_version: int | None = None) -> Snapshot | None:
        """The latest snapshot of ``stream`` at or below ``max_version``."""

    async def read_with_snapshot(
        self, stream: str, to_version: int | None = None
    ) -> tuple[Snapshot | None, list[RecordedEvent]]:
        """The latest snapshot at or below ``to_version`` and the events after it up to
        ``to_version`` (all of them when there is no snapshot). A backend that can do both
        in one round trip overrides this."""
        snapshot = await self.load_snapshot(stream, to_version)
        start = 0 if snapshot is None else snapshot.version + 1
        return snapshot, await self.read(stream, start, to_version)
