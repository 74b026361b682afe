"""The one place that turns a handler's outcome into ack, delayed nack or dead letter.

Transports only carry the decision out, so retry, dead-lettering and poison handling
behave the same on every backend (STYLE rule 4; Watermill ``router.go`` ``handleMessage``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from typing import TYPE_CHECKING, Any

from tidings.app.context import Context
from tidings.app.deadletters import REPLAY_GROUP_HEADER, dead_letter_message
from tidings.app.handler import Decoder, Handler
from tidings.app.retry import Retry
from tidings.errors import DecodeError, HandlerTimeout, MessageError
from tidings.message import CE_PREFIX
from tidings.transports.base import Delivery

if TYPE_CHECKING:
    from tidings.app.app import App

__all__ = ["Dispatcher", "Watchdog"]

log = logging.getLogger("tidings.dispatch")
_CE_TYPE = CE_PREFIX + "type"
_MAX_TRACKED = 10_000
ACK: None = None
"""The outcome that acks (any float is a nack delay)."""


class Watchdog:
    """Cancels handlers that run past ``timeout`` seconds.

    One watchdog task per subscription instead of an ``asyncio.timeout`` per message: arming
    is a dict write, which keeps the per-message cost low. A timed-out handler is cancelled
    within ``timeout / 4`` (at most 1 s) after its deadline.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._fired: set[asyncio.Task[Any]] = set()

    def arm(self, task: asyncio.Task[Any]) -> None:
        self._deadlines[task] = time.monotonic() + self.timeout

    def disarm(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching ``task``; True if the watchdog had cancelled it."""
        self._deadlines.pop(task, None)
        if task in self._fired:
            self._fired.discard(task)
            return True
        return False

    def fired(self, task: asyncio.Task[Any]) -> bool:
        return task in self._fired

    async def run(self) -> None:
        """Check deadlines until cancelled."""
        period = min(max(self.timeout / 4, 0.01), 1.0)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for task, deadline in list(self._deadlines.items()):
                if deadline <= now and task not in self._fired:
                    self._fired.add(task)
                    task.cancel()


class Dispatcher:
    """Decodes, runs the handler chain and settles one delivery at a time (many concurrently)."""

    def __init__(
        self,
        app: App,
        *,
        topic: str,
        group: str,
        handler: Handler,
        decoder: Decoder,
        retry: Retry,
        timeout: float | None,
        needs_context: bool = True,
    ) -> None:
        self.app = app
        self.needs_context = needs_context
        self.topic = topic
        self.group = group
        self.handler = handler
        self.decoder = decoder
        self.retry = retry
        self.timeout = timeout
        self._first_failure: dict[str, float] = {}
        self.watchdog = Watchdog(timeout) if timeout is not None else None
        self.handled = 0
        self.failed = 0
        self.dead_lettered = 0

    async def process(self, delivery: Delivery, task: asyncio.Task[Any]) -> float | None:
        """Handle one delivery and decide its fate: ``None`` = ack, a number = nack with
        that delay (seconds). Dead letters are published here, before the ack is returned.
        The caller settles (in batches). ``task`` is the calling task (the watchdog cancels
        it on timeout). Never raises, except cancellation."""
        message = delivery.message
        target = message.headers.get(REPLAY_GROUP_HEADER)
        if target is not None and target != self.group:
            return ACK
        if message.expires_at is not None and time.time() > message.expires_at:
            return await self._dead_letter(delivery, "expired", None, "")
        try:
            type_name = message.headers.get(_CE_TYPE)
            if not type_name:
                raise DecodeError(f"message {message.id} has no ce-type header (not a CloudEvent)")
            payload = self.decoder(message, type_name)
        except MessageError as exc:
            return await self._dead_letter(delivery, "poison", exc, traceback.format_exc())
        ctx = (
            Context(self.app, message, self.topic, self.group, delivery.attempt)
            if self.needs_context
            else None
        )
        error = await self._run_handler(payload, ctx, task)
        if error is None:
            if self._first_failure:
                self._first_failure.pop(message.id, None)
            self.handled += 1
            return ACK
        return await self._failed(delivery, *error)

    async def _run_handler(
        self, payload: Any, ctx: Context | None, task: asyncio.Task[Any]
    ) -> tuple[BaseException, str] | None:
        """Run the handler chain under the watchdog: None on success, else (error, traceback).

        Three kinds of ``CancelledError`` are told apart: the watchdog's (a timeout: a failed
        attempt), one the handler raised itself without the task being cancelled (a failed
        attempt), and a real cancellation of the worker (``stop()``), which propagates.
        The watchdog is disarmed before the failure path runs, so a slow dead-letter publish
        is never mistaken for a slow handler.
        """
        watchdog = self.watchdog
        timed_out = False
        if watchdog is not None:
            watchdog.arm(task)
        try:
            await self.handler(payload, ctx)
        except asyncio.CancelledError as exc:
            if watchdog is not None and watchdog.fired(task):
                timed_out = True
                if task.uncancel() > 0:
                    raise  # stop() cancelled the worker too
                error: BaseException = HandlerTimeout(
                    f"handler for {self.topic!r} group {self.group!r} ran past its "
                    f"{self.timeout}s timeout and was cancelled"
                )
                return error, traceback.format_exc()
            if task.cancelling():
                raise
            return exc, traceback.format_exc()
        except Exception as exc:
            return exc, traceback.format_exc()
        finally:
            # A cancellation the handler swallowed or turned into another error is undone
            # here, so it cannot hit the worker later.
            if watchdog is not None and watchdog.disarm(task) and not timed_out:
                task.uncancel()
        return None

    async def _failed(self, delivery: Delivery, error: BaseException, tb: str) -> float | None:
        self.failed += 1
        now = time.time()
        self._first_failure.setdefault(delivery.message.id, now)
        if len(self._first_failure) > _MAX_TRACKED:
            # Bounded: another process may settle a message this one saw fail.
            del self._first_failure[next(iter(self._first_failure))]
        if self.retry.gives_up(delivery.attempt, error):
            return await self._dead_letter(delivery, "failed", error, tb)
        delay = self.retry.delay(delivery.attempt)
        log.warning(
            "handler failed on %s (topic %r, group %r, attempt %d/%d): %r; retry in %.2fs",
            delivery.message.id,
            self.topic,
            self.group,
            delivery.attempt,
            self.retry.max_attempts,
            error,
            delay,
        )
        return delay

    async def _dead_letter(
        self, delivery: Delivery, reason: str, error: BaseException | None, tb: str
    ) -> float | None:
        """Publish to ``<topic>.<group>.dlq`` then ack; if that publish fails, nack instead.

        A failed dead-letter publish must not lose the message (Watermill ``poison.go``
        joins both errors): it is released for redelivery after the retry backoff.
        """
        message = delivery.message
        now = time.time()
        first = self._first_failure.pop(message.id, now)
        letter = dead_letter_message(
            message,
            group=self.group,
            reason=reason,
            attempts=delivery.attempt,
            error=error,
            traceback=tb,
            first_failure=first,
            last_failure=now,
        )
        try:
            await self.app.transport.publish([letter])
        except Exception as publish_error:
            log.error(
                "could not dead-letter %s (%s: %r); releasing it for redelivery: %r",
                message.id,
                reason,
                error,
                publish_error,
            )
            self._first_failure[message.id] = first
            return self.retry.delay(delivery.attempt)
        self.dead_lettered += 1
        log.error(
            "dead-lettered %s from topic %r group %r (%s after %d attempt(s)): %r",
            message.id,
            self.topic,
            self.group,
            reason,
            delivery.attempt,
            error,
        )
        return ACK
