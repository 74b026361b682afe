"""The application layer: handlers, routing, the failure policy, middleware, dead letters."""

from tidings.app.app import COMMAND_GROUP, App, Middleware, command_topic
from tidings.app.context import Context
from tidings.app.deadletters import DeadLetter, DeadLetters, dlq_topic
from tidings.app.middleware import Deduplicate, MemoryDedupeStore, Tracing
from tidings.app.retry import Retry

__all__ = [
    "COMMAND_GROUP",
    "App",
    "Context",
    "DeadLetter",
    "DeadLetters",
    "Deduplicate",
    "MemoryDedupeStore",
    "Middleware",
    "Retry",
    "Tracing",
    "command_topic",
    "dlq_topic",
]
