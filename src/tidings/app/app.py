"""The App: publish, subscribe handlers, send commands, run with graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tidings.app.consumer import Consumer
from tidings.app.deadletters import DLQ_GROUP, DeadLetters, dlq_topic
from tidings.app.dispatch import Dispatcher
from tidings.app.handler import Handler, HandlerFunc, make_decoder
from tidings.app.retry import Retry
from tidings.config import resolve_url, scheme_of
from tidings.errors import (
    CapabilityNotSupported,
    ConfigurationError,
    DuplicateHandler,
    EncodeError,
    MessageTooLarge,
    NoHandler,
)
from tidings.message import (
    CE_PREFIX,
    Message,
    TypeRegistry,
    ce_headers,
    default_registry,
    encode_json,
    format_time,
    is_payload_class,
    uuid7,
    uuid7_many,
)
from tidings.transports import Transport, open_transport
from tidings.transports.base import StartFrom

__all__ = ["COMMAND_GROUP", "App", "Middleware", "command_topic"]

log = logging.getLogger("tidings.app")

Middleware = Callable[[Handler], Handler]
"""Wraps the handler call: ``def mw(next: Handler) -> Handler``."""

_CE_CORRELATION = CE_PREFIX + "correlationid"
_CE_KEY = CE_PREFIX + "partitionkey"

COMMAND_GROUP = "handler"
"""The single group that consumes a command topic (competing consumers share it)."""


def check_name(kind: str, name: str) -> None:
    """Topic and group names: non-empty text that every backend can store."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a {kind} name must be a non-empty string, got {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(
            f"{kind} name {name!r} is not valid Unicode text (lone surrogate): {exc}"
        ) from exc


def command_topic(type_name: str) -> str:
    """The topic commands of ``type_name`` are sent to."""
    return f"commands.{type_name}"


class App:
    """An event-driven application bound to one broker URL.

    ``url`` defaults to ``$TIDINGS_BROKER_URL``, then ``sqlite:///./tidings.db``.
    ``await app.start()`` connects and starts every registered subscriber; publishing
    works from then on. ``async with App(url) as app`` does the same and stops on exit.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        source: str = "tidings",
        registry: TypeRegistry = default_registry,
        middleware: Iterable[Middleware] = (),
        max_message_size: int = 1_048_576,
        grace: float = 10.0,
        **transport_options: Any,
    ) -> None:
        self.url = resolve_url(url, "TIDINGS_BROKER_URL")
        self._transport_options = transport_options
        self.source = source
        self.registry = registry
        self.middleware: list[Middleware] = list(middleware)
        self.max_message_size = max_message_size
        self.grace = grace
        self.transport: Transport = open_transport(self.url, **transport_options)
        self.dead_letters = DeadLetters(self.transport)
        self._consumers: list[Consumer] = []
        self._commands: dict[str, str] = {}
        self._known_handled: set[str] = set()
        self._type_info: dict[type[Any], tuple[str, int]] = {}
        self._pending_starts: set[asyncio.Task[None]] = set()
        self._started = False
        self._connected = False
        self._stopping: asyncio.Event | None = None

    def rebind(self, url: str, **transport_options: Any) -> None:
        """Point an App that has not started at another broker URL (``tidings run --url``).

        Registered subscriptions move with it. Raises ``ConfigurationError`` once started.
        """
        if self._started or self._connected:
            raise ConfigurationError(f"cannot rebind a started App (running on {self.url})")
        self.transport = open_transport(url, **(transport_options or self._transport_options))
        self.url = url
        self.dead_letters = DeadLetters(self.transport)
        self._known_handled.clear()

    @property
    def started(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._started

    # ---------------------------------------------------------------- publishing

    def _type_of(self, cls: type[Any]) -> tuple[str, int]:
        """The type name and schema version published for payloads of ``cls``."""
        info = self._type_info.get(cls)
        if info is None:
            if is_payload_class(cls):
                version = getattr(cls, "__version__", 1)
                info = (self.registry.name_of(cls), version if isinstance(version, int) else 1)
            else:
                info = ("json", 1)
            self._type_info[cls] = info
        return info

    def _messages(
        self,
        topic: str,
        events: Sequence[object],
        *,
        key: str | Callable[[object], str | None] | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        ttl: float | None = None,
        subject: str | None = None,
        type: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> list[Message]:
        """Encode ``events`` as transport messages, checking the size limit.

        The headers are built once per event class (from :func:`ce_headers`) and copied:
        in a batch only the id, the correlation id and the key differ.
        """
        check_name("topic", topic)
        now = time.time()
        stamp = format_time(now)
        deliver_at = now + delay if delay else None
        expires_at = now + ttl if ttl else None
        limit = self.max_message_size
        ids = [uuid7()] if len(events) == 1 else uuid7_many(len(events))
        templates: dict[Any, dict[str, str]] = {}  # event class → headers
        messages: list[Message] = []
        for event, mid in zip(events, ids, strict=True):
            template = templates.get(event.__class__)
            if template is None:
                name, version = self._type_of(event.__class__)
                template = templates[event.__class__] = ce_headers(
                    type or name,
                    stamp,
                    source=self.source,
                    subject=subject,
                    causationid=causation_id,
                    dataversion=version,
                    extra=headers,
                )
            body = encode_json(event)
            if len(body) > limit:
                raise MessageTooLarge(len(body), limit)
            h = template.copy()
            h[_CE_CORRELATION] = correlation_id or mid
            k = key(event) if callable(key) else key
            if k is not None:
                h[_CE_KEY] = k
            messages.append(
                Message(
                    id=mid,
                    topic=topic,
                    body=body,
                    headers=h,
                    key=k,
                    deliver_at=deliver_at,
                    expires_at=expires_at,
                )
            )
        return messages

    async def publish(
        self,
        topic: str,
        event: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        ttl: float | None = None,
        subject: str | None = None,
        type: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> str:
        """Publish one event; returns its id once the broker durably accepted it.

        ``key`` orders and partitions; ``delay`` (seconds) holds delivery back; ``ttl``
        (seconds) dead-letters it, reason ``expired``, in each group that has not consumed
        it in time. ``event`` is a Struct, dataclass, pydantic model, or a dict/list
        (type ``json`` unless ``type`` is given).
        """
        (message,) = self._messages(
            topic,
            [event],
            key=key,
            headers=headers,
            delay=delay,
            ttl=ttl,
            subject=subject,
            type=type,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        await self._connect()
        await self.transport.publish([message])
        return message.id

    async def publish_many(
        self,
        topic: str,
        events: Sequence[object],
        *,
        key: str | Callable[[object], str | None] | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        ttl: float | None = None,
    ) -> list[str]:
        """Publish a batch in one broker round trip (one commit); returns the ids in order.

        ``key`` may be a function of the event.
        """
        messages = self._messages(topic, events, key=key, headers=headers, delay=delay, ttl=ttl)
        if messages:
            await self._connect()
            await self.transport.publish(messages)
        return [m.id for m in messages]

    async def send(
        self,
        command: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        ttl: float | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> str:
        """Send a command to its one handler; raises :class:`NoHandler` if none ever subscribed."""
        await self._connect()
        name = self.registry.name_of(command.__class__)
        topic = command_topic(name)
        if topic not in self._known_handled:
            if COMMAND_GROUP not in await self.transport.groups(topic):
                raise NoHandler(
                    f"no handler for command {name!r}: start a process with "
                    f"@app.handle({command.__class__.__name__}) first (commands are not "
                    "broadcast; one without a handler would be lost)"
                )
            self._known_handled.add(topic)
        return await self.publish(
            topic,
            command,
            key=key,
            headers=headers,
            delay=delay,
            ttl=ttl,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )

    # ---------------------------------------------------------------- subscribing

    def subscribe(
        self,
        topic: str,
        *,
        group: str | None = None,
        retry: Retry | None = None,
        ordered: bool = False,
        concurrency: int = 16,
        prefetch: int | None = None,
        timeout: float | None = 30.0,
        lease: float | None = None,
        start: StartFrom = "latest",
        middleware: Iterable[Middleware] = (),
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register ``async def handler(event[, ctx])`` for ``topic`` in ``group``.

        ``group`` defaults to the handler's qualified name, so the same code in several
        processes forms one group of competing consumers. ``concurrency`` bounds the handlers
        running at once; ``prefetch`` (default ``concurrency``) bounds the messages leased at
        once. ``timeout`` cancels a handler that runs longer (it counts as a failed attempt).
        ``start="earliest"`` makes a new group replay what the backend retains. The broker
        lease is ``lease`` or by default ``timeout + 10`` s, and with a prefetch beyond
        ``concurrency`` ``timeout × (⌈prefetch / concurrency⌉ + 1) + 10`` s: long enough for
        a prefetched message to wait for a worker and run.
        """
        if topic.startswith("commands."):
            raise ConfigurationError(
                f"{topic!r} is a command topic; register its one handler with @app.handle(Command)"
            )
        return self._register(
            topic,
            group=group,
            retry=retry,
            ordered=ordered,
            concurrency=concurrency,
            prefetch=prefetch,
            timeout=timeout,
            lease=lease,
            start=start,
            middleware=middleware,
        )

    def handle(
        self,
        command: type[Any],
        *,
        retry: Retry | None = None,
        concurrency: int = 16,
        timeout: float | None = 30.0,
        lease: float | None = None,
        middleware: Iterable[Middleware] = (),
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register the one handler of a command class.

        A second handler in this app raises :class:`DuplicateHandler`; the same handler in
        several processes forms competing consumers, so each command is handled once.
        """
        name = self.registry.name_of(command)
        if name in self._commands:
            raise DuplicateHandler(
                f"command {name!r} already has a handler ({self._commands[name]}); "
                "a command has exactly one handler"
            )

        def decorator(func: HandlerFunc) -> HandlerFunc:
            self._commands[name] = func.__qualname__
            return self._register(
                command_topic(name),
                group=COMMAND_GROUP,
                retry=retry,
                concurrency=concurrency,
                timeout=timeout,
                lease=lease,
                start="earliest",
                middleware=middleware,
            )(func)

        return decorator

    def _register(
        self,
        topic: str,
        *,
        group: str | None,
        retry: Retry | None,
        concurrency: int,
        timeout: float | None,
        lease: float | None,
        start: StartFrom,
        middleware: Iterable[Middleware],
        ordered: bool = False,
        prefetch: int | None = None,
    ) -> Callable[[HandlerFunc], HandlerFunc]:
        check_name("topic", topic)
        if group is not None:
            check_name("group", group)
        if concurrency < 1 or (prefetch is not None and prefetch < 1):
            raise ConfigurationError("concurrency and prefetch must be at least 1")
        if ordered and not self.transport.features.ordered:
            raise CapabilityNotSupported(
                f"{scheme_of(self.url)}:// does not support ordered=True subscriptions"
            )
        if start == "earliest" and not self.transport.features.replay:
            raise CapabilityNotSupported(
                f"{scheme_of(self.url)}:// cannot replay (start='earliest')"
            )
        extra = list(middleware)

        def decorator(func: HandlerFunc) -> HandlerFunc:
            decoder, takes_ctx = make_decoder(func, self.registry)

            if takes_ctx:

                async def call(payload: Any, ctx: Any) -> None:
                    await func(payload, ctx)
            else:

                async def call(payload: Any, ctx: Any) -> None:
                    await func(payload)

            chain: Handler = call
            for mw in reversed([*self.middleware, *extra]):
                chain = mw(chain)
            name = group or f"{func.__module__}.{func.__qualname__}"
            dispatcher = Dispatcher(
                self,
                topic=topic,
                group=name,
                handler=chain,
                decoder=decoder,
                retry=retry or Retry(),
                timeout=timeout,
                needs_context=takes_ctx or bool(self.middleware or extra),
            )
            consumer = Consumer(
                dispatcher,
                ordered=ordered,
                start=start,
                concurrency=concurrency,
                prefetch=prefetch,
                lease=lease,
            )
            self._consumers.append(consumer)
            if self._started:
                task = asyncio.get_running_loop().create_task(self._start_consumer(consumer))
                self._pending_starts.add(task)
                task.add_done_callback(self._pending_starts.discard)
            return func

        return decorator

    @property
    def consumers(self) -> list[Consumer]:
        """The registered subscriptions."""
        return list(self._consumers)

    # ---------------------------------------------------------------- lifecycle

    async def _connect(self) -> None:
        """Publishing connects the broker on first use; it does not start subscribers."""
        if not self._connected:
            await self.transport.start()
            self._connected = True

    async def _start_consumer(self, consumer: Consumer) -> None:
        await self.transport.ensure_group(dlq_topic(consumer.topic, consumer.group), DLQ_GROUP)
        await consumer.start()

    async def start(self) -> None:
        """Connect to the broker and start every registered subscriber. Idempotent."""
        if self._started:
            return
        await self.transport.start()
        self._connected = True
        self._started = True
        for consumer in self._consumers:
            await self._start_consumer(consumer)

    async def stop(self) -> None:
        """Graceful shutdown: stop fetching, drain in-flight handlers, close the broker."""
        if not (self._started or self._connected):
            return
        self._started = self._connected = False
        if self._pending_starts:
            await asyncio.gather(*self._pending_starts, return_exceptions=True)
        await asyncio.gather(*(c.stop(self.grace) for c in self._consumers if c.running))
        await self.transport.close()

    async def run(self) -> None:
        """Start, then serve until SIGINT/SIGTERM (or :meth:`shutdown`), then stop gracefully."""
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stopping.set)
                installed.append(sig)
        try:
            await self.start()
            await self._stopping.wait()
            log.info("shutting down: draining in-flight messages (grace %.1fs)", self.grace)
            for sig in installed:
                loop.add_signal_handler(sig, self._signal_while_draining, sig)
        finally:
            try:
                await self.stop()
            finally:
                for sig in installed:
                    loop.remove_signal_handler(sig)

    def _signal_while_draining(self, sig: signal.Signals) -> None:
        log.warning(
            "%s received while draining; still waiting up to %.1fs for in-flight handlers",
            sig.name,
            self.grace,
        )

    def shutdown(self) -> None:
        """Ask a running :meth:`run` to stop."""
        if self._stopping is not None:
            self._stopping.set()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
