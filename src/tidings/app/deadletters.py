"""Dead letters: the ``<topic>.<group>.dlq`` topics, their headers, and the admin API."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tidings.errors import TidingsError
from tidings.message import Message, uuid7
from tidings.transports.base import Transport

__all__ = [
    "DLQ_GROUP",
    "DLQ_SUFFIX",
    "REPLAY_GROUP_HEADER",
    "REPLAY_OF_HEADER",
    "DeadLetter",
    "DeadLetters",
    "dead_letter_message",
    "dlq_topic",
]

DLQ_SUFFIX = ".dlq"
DLQ_GROUP = "dlq"
"""The group that retains a dead-letter topic's messages until replayed or purged."""
REPLAY_GROUP_HEADER = "tidings-replay-group"
"""A replayed message is addressed to the group that failed it; other groups skip it."""
REPLAY_OF_HEADER = "tidings-replay-of"
"""The id of the dead letter a replayed message copies (the replay gets a fresh id, so a
deduplicating group that never handled the original still runs it)."""

_H = "dlq-"
_EVERY = 1_000_000_000


def dlq_topic(topic: str, group: str) -> str:
    """The dead-letter topic of ``group`` on ``topic``."""
    return f"{topic}.{group}{DLQ_SUFFIX}"


def dead_letter_message(
    message: Message,
    *,
    group: str,
    reason: str,
    attempts: int,
    error: BaseException | None,
    traceback: str,
    first_failure: float,
    last_failure: float,
) -> Message:
    """The copy of ``message`` that goes to the dead-letter topic, with the reason in headers."""
    headers = {k: v for k, v in message.headers.items() if k != REPLAY_GROUP_HEADER}
    headers.update(
        {
            _H + "topic": message.topic,
            _H + "group": group,
            _H + "reason": reason,
            _H + "attempts": str(attempts),
            _H + "error-type": type(error).__qualname__ if error else "",
            _H + "error": str(error) if error else "",
            _H + "traceback": traceback[-8000:],
            _H + "first-failure": f"{first_failure:.6f}",
            _H + "last-failure": f"{last_failure:.6f}",
        }
    )
    if message.expires_at is not None:
        headers[_H + "expires-at"] = f"{message.expires_at:.6f}"
    return Message(
        id=message.id,
        topic=dlq_topic(message.topic, group),
        body=message.body,
        headers=headers,
        key=message.key,
    )


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message and why it is there."""

    id: str
    topic: str
    group: str
    reason: str
    """``failed`` (attempts exhausted), ``poison`` (could not decode) or ``expired`` (ttl)."""
    attempts: int
    error_type: str
    error: str
    traceback: str
    first_failure: float
    last_failure: float
    message: Message

    @classmethod
    def from_message(cls, message: Message) -> DeadLetter:
        h = message.headers
        return cls(
            id=message.id,
            topic=h.get(_H + "topic", ""),
            group=h.get(_H + "group", ""),
            reason=h.get(_H + "reason", ""),
            attempts=int(h.get(_H + "attempts", "0") or 0),
            error_type=h.get(_H + "error-type", ""),
            error=h.get(_H + "error", ""),
            traceback=h.get(_H + "traceback", ""),
            first_failure=float(h.get(_H + "first-failure", "0") or 0),
            last_failure=float(h.get(_H + "last-failure", "0") or 0),
            message=message,
        )

    def original(self) -> Message:
        """The message as it was first published, addressed back to the failed group."""
        headers = {k: v for k, v in self.message.headers.items() if not k.startswith(_H)}
        headers[REPLAY_GROUP_HEADER] = self.group
        headers[REPLAY_OF_HEADER] = self.id
        return Message(
            id=uuid7(),
            topic=self.topic,
            body=self.message.body,
            headers=headers,
            key=self.message.key,
        )


class DeadLetters:
    """List, inspect, replay and purge dead letters on any transport."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def queues(self) -> list[tuple[str, int]]:
        """Every dead-letter topic and how many messages it holds."""
        out: list[tuple[str, int]] = []
        for t in await self._transport.stats():
            if t.topic.endswith(DLQ_SUFFIX):
                pending = sum(g.pending for g in t.groups if g.group == DLQ_GROUP)
                out.append((t.topic, pending))
        return out

    async def _select(
        self,
        topic: str | None = None,
        group: str | None = None,
        ids: Sequence[str] | None = None,
        limit: int = _EVERY,
    ) -> list[tuple[str, DeadLetter]]:
        """(dead-letter topic, letter) pairs that match, oldest failure first.

        With both ``topic`` and ``group`` the one queue is known by name; otherwise every
        dead-letter topic is looked at.
        """
        if topic is not None and group is not None:
            names = [dlq_topic(topic, group)]
        else:
            names = [name for name, _ in await self.queues()]
        wanted = None if ids is None else set(ids)
        found: list[tuple[str, DeadLetter]] = []
        for name in names:
            for message in await self._transport.browse(name, DLQ_GROUP, limit):
                letter = DeadLetter.from_message(message)
                if (
                    (topic is None or letter.topic == topic)
                    and (group is None or letter.group == group)
                    and (wanted is None or letter.id in wanted)
                ):
                    found.append((name, letter))
        found.sort(key=lambda pair: pair[1].last_failure)
        return found

    async def _remove(self, selected: Sequence[tuple[str, DeadLetter]]) -> int:
        by_queue: dict[str, list[str]] = {}
        for name, letter in selected:
            by_queue.setdefault(name, []).append(letter.id)
        removed = 0
        for name, queue_ids in by_queue.items():
            removed += await self._transport.purge(name, DLQ_GROUP, queue_ids)
        return removed

    async def list(
        self, topic: str | None = None, group: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters, oldest first; filter by original topic and/or group."""
        return [letter for _, letter in await self._select(topic, group, limit=limit)][:limit]

    async def show(self, message_id: str) -> DeadLetter:
        """One dead letter by message id (raises ``TidingsError`` when absent)."""
        for _, letter in await self._select(ids=[message_id]):
            return letter
        raise TidingsError(f"no dead letter with id {message_id!r}; see `tidings dlq list`")

    async def replay(
        self, topic: str | None = None, group: str | None = None, ids: Sequence[str] | None = None
    ) -> int:
        """Publish dead letters back to their original topic (for the failed group only).

        Each is republished first and removed from the dead letters after, so a crash in
        between duplicates rather than loses.
        """
        selected = await self._select(topic, group, ids)
        for start in range(0, len(selected), 500):
            chunk = selected[start : start + 500]
            await self._transport.publish([letter.original() for _, letter in chunk])
            await self._remove(chunk)
        return len(selected)

    async def purge(
        self, topic: str | None = None, group: str | None = None, ids: Sequence[str] | None = None
    ) -> int:
        """Delete dead letters for good."""
        if ids is None and topic is None and group is None:
            return sum(
                [await self._transport.purge(name, DLQ_GROUP) for name, _ in await self.queues()]
            )
        return await self._remove(await self._select(topic, group, ids))
