"""The event store: append-only streams, a gap-free global log, subscriptions (DESIGN §5)."""

from tidings.store.base import (
    ANY,
    EXISTS,
    NO_STREAM,
    AppendResult,
    DuplicateEventId,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Recorder,
    Snapshot,
    StreamInfo,
)
from tidings.store.eventstore import EventStore

__all__ = [
    "ANY",
    "EXISTS",
    "NO_STREAM",
    "AppendResult",
    "DuplicateEventId",
    "EventStore",
    "ExpectedVersion",
    "NewEvent",
    "RecordedEvent",
    "Recorder",
    "Snapshot",
    "StreamInfo",
]
