"""The transport interface: what every broker backend implements.

A transport moves :class:`~tidings.message.Message` objects between publishers and
subscriber groups and carries out ack/nack decisions. It knows nothing of handlers, retry
policy or event classes: deciding *whether* to ack, retry or dead-letter is the app layer's
job (``tidings.app.dispatch``), done once for every backend.

Semantics every transport must provide (asserted by ``tests/conformance``):

* ``publish`` returns only once the backend durably accepted every message of the batch.
* A group created with :meth:`Transport.subscribe` or :meth:`Transport.ensure_group`
  receives every message published to its topic afterwards. ``start="earliest"`` also
  replays what the backend retains.
* Inside a group each message is leased to one :class:`Delivery` at a time. A lease that
  is neither acked nor nacked within ``lease`` seconds expires and the message is
  delivered again (at-least-once), with ``attempt`` increased.
* ``ordered=True``: messages of one key are leased one at a time, in publish order; a
  nacked message blocks later messages of its key until it is acked.
* ``deliver_at`` in the future: not leased before that time.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Literal

from tidings.message import Message

__all__ = [
    "Delivery",
    "Features",
    "GroupStats",
    "StartFrom",
    "Subscription",
    "TopicStats",
    "Transport",
]

StartFrom = Literal["latest", "earliest"]


@dataclasses.dataclass(frozen=True)
class Features:
    """What a backend guarantees. Conformance tests skip only for an unclaimed feature."""

    persistent: bool
    """Messages survive a restart of the process (and of the broker)."""
    multi_process: bool
    """Several OS processes can share one group (competing consumers across processes)."""
    ordered: bool
    """``ordered=True`` subscriptions (per-key order) are supported."""
    replay: bool
    """``start="earliest"`` replays messages published before the group existed."""
    delay: bool = True
    """``deliver_at`` and delayed nack are honoured."""
    browse: bool = True
    """:meth:`Transport.browse` and :meth:`Transport.purge` by id work (dead-letter admin)."""


@dataclasses.dataclass(frozen=True)
class GroupStats:
    """A group's backlog on one topic."""

    group: str
    pending: int
    """Messages not yet acked, including in-flight ones."""
    inflight: int
    """Messages currently leased to a consumer."""


@dataclasses.dataclass(frozen=True)
class TopicStats:
    """A topic's message count and its groups."""

    topic: str
    messages: int
    groups: tuple[GroupStats, ...]


class Delivery(abc.ABC):
    """One leased message. Exactly one of :meth:`ack` or :meth:`nack` should be called.

    Calling either a second time, or after the lease expired, is a no-op: the message
    belongs to whoever leased it next.
    """

    __slots__ = ()

    message: Message
    attempt: int
    """1 for the first delivery; incremented by every nack and every lease expiry."""

    @abc.abstractmethod
    async def ack(self) -> None:
        """Remove the message from the group. Returns when the backend recorded it."""

    @abc.abstractmethod
    async def nack(self, delay: float = 0.0) -> None:
        """Release the message for redelivery no sooner than ``delay`` seconds from now."""


class Subscription(abc.ABC):
    """A consumer's handle on one group of one topic (pull model)."""

    @abc.abstractmethod
    async def fetch(self, max_messages: int) -> list[Delivery]:
        """Lease up to ``max_messages`` messages, waiting until at least one is available.

        Returns an empty list once the subscription is closed. Safe to call from one task
        at a time; cancelling it leases nothing.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop fetching. Unacked deliveries stay valid until acked, nacked or expired."""

    async def settle(
        self, acks: Sequence[Delivery], nacks: Sequence[tuple[Delivery, float]] = ()
    ) -> None:
        """Ack ``acks`` and nack ``nacks`` (each with its delay) in as few round trips as the
        backend allows; returns once all are recorded. Works after :meth:`close` too.

        The default settles one at a time; a backend with a per-call cost overrides it.
        """
        for delivery in acks:
            await delivery.ack()
        for delivery, delay in nacks:
            await delivery.nack(delay)


class Transport(abc.ABC):
    """A broker backend, selected by URL scheme (see :func:`tidings.transports.open_transport`)."""

    features: Features
    url: str

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and prepare storage. Idempotent. Raises ``BrokerUnavailable``."""

    @abc.abstractmethod
    async def publish(self, messages: Sequence[Message]) -> None:
        """Durably enqueue ``messages`` for every group of their topics.

        Returns once the backend accepted all of them (publisher confirms, fsync, acks=all).
        Safe to call concurrently; concurrent calls may be group-committed.
        """

    @abc.abstractmethod
    async def subscribe(
        self,
        topic: str,
        group: str,
        *,
        ordered: bool = False,
        start: StartFrom = "latest",
        lease: float = 30.0,
    ) -> Subscription:
        """Join ``group`` on ``topic`` (creating the group if needed).

        ``lease`` is the visibility timeout of a fetched message. Raises
        ``CapabilityNotSupported`` when ``ordered`` or ``start`` cannot be honoured.
        """

    @abc.abstractmethod
    async def ensure_group(self, topic: str, group: str, *, start: StartFrom = "latest") -> None:
        """Create ``group`` on ``topic`` without consuming, so it retains what is published."""

    @abc.abstractmethod
    async def delete_group(self, topic: str, group: str) -> bool:
        """Delete ``group`` and everything pending for it; False if it did not exist.

        For short-lived consumers such as ``tidings tail``: a group left behind keeps
        receiving (and retaining) every message published to its topic.
        """

    @abc.abstractmethod
    async def groups(self, topic: str) -> list[str]:
        """Names of the groups that exist on ``topic``."""

    @abc.abstractmethod
    async def browse(self, topic: str, group: str, limit: int = 100) -> list[Message]:
        """Messages pending for ``group`` (not yet acked), oldest first, without leasing."""

    @abc.abstractmethod
    async def purge(self, topic: str, group: str, ids: Sequence[str] | None = None) -> int:
        """Remove pending messages of ``group`` (all, or those with the given ids)."""

    @abc.abstractmethod
    async def stats(self) -> list[TopicStats]:
        """Message counts per topic and backlog per group."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close connections. Idempotent. Pending publishes are flushed first."""

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
