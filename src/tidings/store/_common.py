"""Rules every recorder shares: name checks, expected versions, idempotency, live follow.

Each backend does its own I/O but decides with these functions, so the three backends
answer the same request the same way (STYLE rule 10).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import msgspec

from tidings.errors import (
    CorruptEvent,
    InvalidStreamName,
    StoreUnavailable,
    WrongExpectedVersion,
)
from tidings.store.base import (
    ANY,
    EXISTS,
    NO_STREAM,
    AppendResult,
    DuplicateEventId,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
)

MAX_STREAM_NAME = 2000
"""Longest accepted stream name, in characters."""

ReadAll = Callable[..., Awaitable[list[RecordedEvent]]]
Append = tuple[str, Sequence[NewEvent], ExpectedVersion]
"""One queued append: stream, events, expected version."""
WriteBatch = Callable[[list[Append]], Awaitable[list[AppendResult | Exception]]]

_meta_decoder = msgspec.json.Decoder(dict[str, str])
_meta_encoder = msgspec.json.Encoder()


def validate_stream(name: object) -> str:
    """Return ``name`` if it is a usable stream name, else raise ``InvalidStreamName``.

    Quotes, unicode and long names are fine (values are always bound, never spliced into
    SQL); rejected are non-strings, the empty name, NUL, names that are not valid UTF-8
    (lone surrogates) and names over ``MAX_STREAM_NAME`` characters.
    """
    if not isinstance(name, str) or not name:
        raise InvalidStreamName(f"stream name must be a non-empty string, got {name!r}")
    if len(name) > MAX_STREAM_NAME:
        raise InvalidStreamName(
            f"stream name is {len(name)} characters, over the limit of {MAX_STREAM_NAME}"
        )
    if "\x00" in name:
        raise InvalidStreamName("stream name contains a NUL character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidStreamName(f"stream name is not valid UTF-8: {exc}") from None
    return name


def category_of(stream: str) -> str | None:
    """The part before the first ``-``, or None when the name has no ``-``."""
    head, sep, _ = stream.partition("-")
    return head if sep else None


def validate_append(stream: str, events: Sequence[NewEvent], expected: ExpectedVersion) -> None:
    """Check the arguments of an append before any I/O."""
    validate_stream(stream)
    if not events:
        raise ValueError("append needs at least one event")
    if isinstance(expected, bool) or not (
        expected in (ANY, NO_STREAM, EXISTS) or (isinstance(expected, int) and expected >= 0)
    ):
        raise ValueError(
            f"expected_version must be ANY, NO_STREAM, EXISTS or an int >= 0, got {expected!r}"
        )
    seen: set[str] = set()
    for event in events:
        if event.id in seen:
            raise DuplicateEventId(event.id, None, None)
        seen.add(event.id)


def expected_ok(expected: ExpectedVersion, current: int | None) -> bool:
    """Whether a stream at ``current`` (None: no events) satisfies ``expected``."""
    if expected is ANY:
        return True
    if expected is NO_STREAM:
        return current is None
    if expected is EXISTS:
        return current is not None
    return current == expected


def check_expected(stream: str, expected: ExpectedVersion, current: int | None) -> None:
    if not expected_ok(expected, current):
        raise WrongExpectedVersion(stream, expected, current)


def resolve_duplicates(
    stream: str,
    events: Sequence[NewEvent],
    expected: ExpectedVersion,
    found: Mapping[str, tuple[str, int, int]],
) -> AppendResult:
    """Decide a re-append whose ids are (partly) stored; ``found``: id → (stream, version, pos).

    Idempotent (the original result) when every id is stored in ``stream`` at consecutive
    versions in request order, starting where ``expected`` says the append went; otherwise
    ``DuplicateEventId`` naming the first id that is out of place (or missing).
    """
    first = found.get(events[0].id)
    start = first[1] if first is not None and first[0] == stream else None
    if start is not None and expected_ok(expected, start - 1 if start > 0 else None):
        position = 0
        for offset, event in enumerate(events):
            where = found.get(event.id)
            if where is None or where[0] != stream or where[1] != start + offset:
                break
            position = where[2]
        else:
            return AppendResult(start + len(events) - 1, position)
    for event in events:
        where = found.get(event.id)
        if where is not None:
            raise DuplicateEventId(event.id, where[0], where[1])
    raise DuplicateEventId(events[0].id, None, None)  # pragma: no cover - found is non-empty


def encode_metadata(metadata: Mapping[str, str]) -> str:
    return _meta_encoder.encode(metadata).decode() if metadata else "{}"


def decode_metadata(raw: str | bytes | None, stream: str, version: int) -> dict[str, str]:
    """Parse a stored metadata column; garbage raises ``CorruptEvent``, never a silent skip."""
    if raw is None or raw in ("{}", b"{}"):
        return {}
    try:
        return _meta_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        reason = f"metadata is not a JSON object of strings: {exc}"
        raise CorruptEvent(stream, version, reason) from exc


class Notifier:
    """Wakes the live subscriptions of one recorder when an append commits."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()
        self.closed = False

    def notify(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    def close(self) -> None:
        self.closed = True
        self.notify()

    def add(self, waiter: asyncio.Event) -> None:
        self._waiters.add(waiter)

    def discard(self, waiter: asyncio.Event) -> None:
        self._waiters.discard(waiter)


async def follow(
    read_all: ReadAll,
    notifier: Notifier,
    from_position: int,
    category: str | None,
    poll_interval: float,
    batch: int = 500,
) -> AsyncIterator[RecordedEvent]:
    """Catch up by paging ``read_all``, then wait for a notification (or the fallback poll).

    No gap: ``read_all`` never returns past a commit in doubt, and the next page starts right
    after the last event yielded. No duplicate: positions strictly increase. The waiter is
    cleared *before* each read, so a commit landing during the read wakes the next wait.
    """
    position = max(from_position, 0)
    waiter = asyncio.Event()
    notifier.add(waiter)
    try:
        while not notifier.closed:
            waiter.clear()
            try:
                page = await read_all(position, batch, category=category)
            except StoreUnavailable:
                if notifier.closed:  # the recorder closed under us: the iterator ends
                    return
                raise
            for event in page:
                yield event
                position = event.position + 1
            if len(page) < batch and not notifier.closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), poll_interval)
    finally:
        notifier.discard(waiter)


class GroupCommit:
    """Group commit of appends: those queued while a write is in flight go together in
    the next ``write`` call (one transaction, one fsync), each getting its own outcome.

    ``max_inflight`` writes may run at once; ``max_batch`` caps the appends per write;
    ``committed`` runs after each write (to wake live subscriptions).
    """

    def __init__(
        self,
        write: WriteBatch,
        *,
        max_inflight: int = 1,
        max_batch: int | None = None,
        committed: Callable[[], None] | None = None,
    ) -> None:
        self._write = write
        self.max_inflight = max(1, max_inflight)
        self.max_batch = max_batch
        self._committed = committed
        self._pending: list[tuple[Append, asyncio.Future[AppendResult]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, append: Append) -> AppendResult:
        """Queue ``append`` and wait for its outcome (its own error, if it failed)."""
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._pending.append((append, future))
        if len(self._tasks) < self.max_inflight:
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._pending:
            size = len(self._pending) if self.max_batch is None else self.max_batch
            batch = self._pending[:size]
            del self._pending[:size]
            try:
                outcomes = await self._write([append for append, _ in batch])
            except Exception as exc:
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            if self._committed is not None:
                self._committed()

    async def drain(self) -> None:
        """Wait until every queued append has its outcome."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
