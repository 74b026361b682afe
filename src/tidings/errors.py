"""Every exception tidings raises.

Hierarchy::

    TidingsError
    ├── ConfigurationError
    │   ├── UnsupportedURL          unknown scheme or malformed URL
    │   └── MissingExtra            backend driver not installed (names the pip command)
    ├── MessageError
    │   ├── EncodeError             payload could not be serialised
    │   ├── MessageTooLarge         body over the configured size limit
    │   ├── DecodeError             malformed body or envelope (poison)
    │   ├── UnknownEventType        type name not in the registry (poison)
    │   └── SchemaValidationError   body does not match the registered class (poison)
    │       └── MissingUpcaster     no upcaster for a step from stored to current version
    ├── TransportError
    │   ├── BrokerUnavailable       cannot reach or lost the broker
    │   ├── TransportClosed         used after close()
    │   └── CapabilityNotSupported  subscription asks for a feature the backend lacks
    ├── HandlerError
    │   ├── NoHandler               command sent with nobody to handle it
    │   ├── DuplicateHandler        second handler for one command
    │   └── HandlerTimeout          handler ran past its lease
    ├── StoreError
    │   ├── WrongExpectedVersion    optimistic concurrency conflict (carries .actual)
    │   ├── DuplicateEventId        an appended event id is already stored elsewhere
    │   ├── StreamNotFound
    │   ├── StreamDeleted
    │   ├── CorruptEvent            stored row cannot be decoded (names stream and version)
    │   ├── InvalidStreamName
    │   └── StoreUnavailable
    └── DomainError                 base class for business-rule violations in aggregates
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "CapabilityNotSupported",
    "ConfigurationError",
    "CorruptEvent",
    "DecodeError",
    "DomainError",
    "DuplicateEventId",
    "DuplicateHandler",
    "EncodeError",
    "HandlerError",
    "HandlerTimeout",
    "InvalidStreamName",
    "MessageError",
    "MessageTooLarge",
    "MissingExtra",
    "MissingUpcaster",
    "NoHandler",
    "SchemaValidationError",
    "StoreError",
    "StoreUnavailable",
    "StreamDeleted",
    "StreamNotFound",
    "TidingsError",
    "TransportClosed",
    "TransportError",
    "UnknownEventType",
    "UnsupportedURL",
    "WrongExpectedVersion",
]


class TidingsError(Exception):
    """Base class of every tidings error."""


class ConfigurationError(TidingsError):
    """The configuration (URL, options) is invalid."""


class UnsupportedURL(ConfigurationError):
    """The URL's scheme is unknown or the URL is malformed."""


class MissingExtra(ConfigurationError):
    """A backend's optional dependency is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f"the {extra!r} backend needs the {module!r} package, which is not installed; "
            f"install it with: pip install 'tidings[{extra}]'  (or: uv add 'tidings[{extra}]')"
        )


class MessageError(TidingsError):
    """A message could not be encoded or decoded."""


class EncodeError(MessageError):
    """A payload could not be serialised to JSON."""


class MessageTooLarge(MessageError):
    """The encoded message is larger than the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"message body is {size} bytes, over the limit of {limit} bytes; "
            "send a reference (an id or URL) instead, or raise max_message_size"
        )


class DecodeError(MessageError):
    """A body or envelope is malformed (not JSON, missing attributes)."""


class UnknownEventType(MessageError):
    """An envelope names a type that is not registered."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        super().__init__(
            f"unknown event type {type_name!r}: register its class with "
            "tidings.register_type(cls, name) or subclass tidings.Event in an imported module"
        )


class SchemaValidationError(MessageError):
    """A body does not match the registered class's schema."""


class MissingUpcaster(SchemaValidationError):
    """No upcaster is registered for one step of the chain (or the data is newer)."""

    def __init__(self, type_name: str, version: int, target: int) -> None:
        self.type_name = type_name
        self.version = version
        self.target = target
        if version > target:
            msg = (
                f"{type_name!r} data is version {version}, newer than the class's "
                f"__version__ {target}; deploy the newer class"
            )
        else:
            msg = (
                f"no upcaster for {type_name!r} from version {version} to {version + 1}; "
                f"register one with @upcaster({type_name!r}, {version})"
            )
        super().__init__(msg)


class TransportError(TidingsError):
    """A broker transport failed."""


class BrokerUnavailable(TransportError):
    """The broker cannot be reached or the connection was lost."""


class TransportClosed(TransportError):
    """The transport or subscription was used after close()."""


class CapabilityNotSupported(TransportError):
    """A subscription asked for a capability the backend does not offer."""


class HandlerError(TidingsError):
    """A problem with handler registration or execution."""


class NoHandler(HandlerError):
    """A command was sent but no handler group exists for it."""


class DuplicateHandler(HandlerError):
    """A second handler was registered for a command."""


class HandlerTimeout(HandlerError):
    """A handler ran longer than its subscription's timeout (lease) and was cancelled."""


class StoreError(TidingsError):
    """An event store operation failed."""


class WrongExpectedVersion(StoreError):
    """Optimistic concurrency conflict on append."""

    def __init__(self, stream: str, expected: object, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = "no stream" if actual is None else f"version {actual}"
        super().__init__(
            f"stream {stream!r} is at {shown}, but the append expected {expected}; "
            "reload the stream and retry the command"
        )


class DuplicateEventId(StoreError):
    """An appended event id is already stored at another place (stream or version).

    Raised instead of an idempotent success when the ids of an append are already stored
    but not as exactly this append (same stream, consecutive versions in the same order,
    at the place ``expected_version`` names), or when one append repeats an id.
    """

    def __init__(self, event_id: str, stream: str | None, version: int | None) -> None:
        self.event_id = event_id
        self.stream = stream
        self.version = version
        where = "in this append" if stream is None else f"as event {version} of {stream!r}"
        super().__init__(f"event id {event_id!r} is already stored {where}")


class StreamNotFound(StoreError):
    """The stream does not exist."""


class StreamDeleted(StoreError):
    """The stream was deleted (tombstoned)."""


class CorruptEvent(StoreError):
    """A stored event cannot be decoded."""

    def __init__(self, stream: str, version: int, reason: str) -> None:
        self.stream = stream
        self.version = version
        self.reason = reason
        super().__init__(f"event {version} of stream {stream!r} is corrupt: {reason}")


class InvalidStreamName(StoreError):
    """A stream name is empty, too long or contains forbidden characters."""


class StoreUnavailable(StoreError):
    """The event store's database cannot be reached."""


class DomainError(TidingsError):
    """Base class for business-rule violations raised by aggregates."""
