"""The handler context: attempt number, headers, and publishing that keeps the conversation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidings.message import Envelope, Message

if TYPE_CHECKING:
    from tidings.app.app import App

__all__ = ["Context"]


class Context:
    """What a handler knows about the message it handles.

    ``ctx.publish`` and ``ctx.send`` propagate the correlation id and set the causation id
    to this message's id, so a chain of events can be traced back to its origin.
    """

    __slots__ = ("_envelope", "app", "attempt", "group", "message", "topic")

    def __init__(self, app: App, message: Message, topic: str, group: str, attempt: int) -> None:
        self.app = app
        self.message = message
        self.topic = topic
        self.group = group
        self.attempt = attempt
        self._envelope: Envelope | None = None

    @property
    def envelope(self) -> Envelope:
        """The CloudEvents envelope (attributes, extensions, raw data)."""
        if self._envelope is None:
            self._envelope = Envelope.from_message(self.message)
        return self._envelope

    @property
    def id(self) -> str:
        """The message id (CloudEvents ``id``)."""
        return self.message.id

    @property
    def headers(self) -> dict[str, str]:
        """The user headers the publisher set."""
        return self.envelope.headers

    @property
    def key(self) -> str | None:
        """The partition key, if any."""
        return self.message.key

    @property
    def correlation_id(self) -> str | None:
        return self.message.headers.get("ce-correlationid")

    def _lineage(self) -> dict[str, Any]:
        return {"correlation_id": self.correlation_id, "causation_id": self.message.id}

    async def publish(self, topic: str, event: object, **options: Any) -> str:
        """Publish like :meth:`App.publish`, caused by the message being handled."""
        return await self.app.publish(topic, event, **self._lineage(), **options)

    async def send(self, command: object, **options: Any) -> str:
        """Send a command like :meth:`App.send`, caused by the message being handled."""
        return await self.app.send(command, **self._lineage(), **options)
