"""tidings: events in, state out.

Publish/subscribe with acknowledgements, retries and dead letters; event sourcing; CQRS
read models; live delivery to browsers. Embedded SQLite by default; RabbitMQ, Kafka, NATS,
Redis or PostgreSQL by changing one URL.
"""

from tidings.app import (
    App,
    Context,
    DeadLetter,
    DeadLetters,
    Deduplicate,
    MemoryDedupeStore,
    Middleware,
    Retry,
    Tracing,
)
from tidings.errors import (
    BrokerUnavailable,
    CapabilityNotSupported,
    ConfigurationError,
    CorruptEvent,
    DecodeError,
    DomainError,
    DuplicateHandler,
    EncodeError,
    HandlerTimeout,
    MessageTooLarge,
    MissingExtra,
    NoHandler,
    SchemaValidationError,
    StoreError,
    StreamDeleted,
    StreamNotFound,
    TidingsError,
    TransportClosed,
    UnknownEventType,
    UnsupportedURL,
    WrongExpectedVersion,
)
from tidings.message import Command, Envelope, Event, Message, register_type, uuid7

__version__ = "0.1.0"

__all__ = [
    "App",
    "BrokerUnavailable",
    "CapabilityNotSupported",
    "Command",
    "ConfigurationError",
    "Context",
    "CorruptEvent",
    "DeadLetter",
    "DeadLetters",
    "DecodeError",
    "Deduplicate",
    "DomainError",
    "DuplicateHandler",
    "EncodeError",
    "Envelope",
    "Event",
    "HandlerTimeout",
    "MemoryDedupeStore",
    "Message",
    "MessageTooLarge",
    "Middleware",
    "MissingExtra",
    "NoHandler",
    "Retry",
    "SchemaValidationError",
    "StoreError",
    "StreamDeleted",
    "StreamNotFound",
    "TidingsError",
    "Tracing",
    "TransportClosed",
    "UnknownEventType",
    "UnsupportedURL",
    "WrongExpectedVersion",
    "__version__",
    "register_type",
    "uuid7",
]
