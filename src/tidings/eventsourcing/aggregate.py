"""Event-sourced aggregates: state changed only by applying events.

An aggregate is a plain class (no metaclass): it keeps its state in ``self.state`` (a
msgspec ``Struct`` or a dataclass, so that it can be snapshotted), declares one handler per
event class with :func:`applies`, and its command methods check the business rules, raise a
:class:`~tidings.errors.DomainError` when a rule is broken, and otherwise call
:meth:`Aggregate.record`. ``record`` applies the event at once (the state is always current)
and keeps it in :attr:`Aggregate.pending` until a :class:`~tidings.eventsourcing.Repository`
saves it. Replaying the stream calls the same handlers, so there is one code path from event
to state.

Example::

    class Counter(msgspec.Struct):
        value: int = 0

    class Incremented(Event):
        by: int

    class Tally(Aggregate[Counter]):
        category = "tally"

        def initial_state(self) -> Counter:
            return Counter()

        def increment(self, by: int) -> None:
            if by <= 0:
                raise NotPositive(by)        # a DomainError: nothing is recorded
            self.record(Incremented(by=by))

        @applies(Incremented)
        def _incremented(self, event: Incremented) -> None:
            self.state.value += event.by
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from tidings.message.codec import decode_payload, encode_json

__all__ = ["Aggregate", "applies"]

S = TypeVar("S")
E = TypeVar("E")

_APPLIES_ATTR = "__tidings_applies__"


def applies(
    *event_types: type[Any],
) -> Callable[[Callable[[Any, E], None]], Callable[[Any, E], None]]:
    """Mark an aggregate method as the handler that applies events of ``event_types``.

    The method takes the event and mutates ``self.state``; it must not check rules or raise
    (rules belong in the command methods: a stored event is a fact). A handler for a base
    class also handles its subclasses unless a subclass has its own handler.
    """
    if not event_types:
        raise TypeError("@applies needs at least one event class")

    def mark(fn: Callable[[Any, E], None]) -> Callable[[Any, E], None]:
        setattr(fn, _APPLIES_ATTR, event_types)
        return fn

    return mark


class Aggregate(abc.ABC, Generic[S]):
    """Base class of event-sourced aggregates.

    Subclasses set :attr:`category` (the stream is ``f"{category}-{id}"``), implement
    :meth:`initial_state`, and declare ``@applies(EventClass)`` handlers. The constructor
    takes only the id: a new aggregate is created by a command (usually a classmethod that
    records the "created" event), and a :class:`~tidings.eventsourcing.Repository` builds
    existing ones by replay.

    Attributes:
        id: the aggregate id (the part of the stream name after ``category-``).
        version: the stream version of the last applied event (recorded or pending);
            ``-1`` for an aggregate with no events.
        state: the current state (from :meth:`initial_state`, then changed by handlers).
    """

    category: ClassVar[str]
    """Stream category; the stream of aggregate ``id`` is ``f"{category}-{id}"``."""
    snapshot_version: ClassVar[int] = 1
    """Bump when the state's shape changes: older snapshots are then ignored (full replay)."""

    _handlers: ClassVar[dict[type[Any], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[type[Any], str] = {}
        # Walk the MRO from the base down so that a subclass's handler overrides its parent's.
        for klass in reversed(cls.__mro__):
            for name, member in vars(klass).items():
                for event_type in getattr(member, _APPLIES_ATTR, ()):
                    handlers[event_type] = name
        cls._handlers = handlers

    def __init__(self, id: str) -> None:
        if not id:
            raise ValueError("an aggregate id must be a non-empty string")
        self.id = id
        self.version = -1
        self.state: S = self.initial_state()
        self._pending: list[object] = []

    @abc.abstractmethod
    def initial_state(self) -> S:
        """The state before the first event (a msgspec Struct or dataclass by default)."""

    @classmethod
    def stream_name(cls, id: str) -> str:
        """The stream that holds aggregate ``id``'s events."""
        return f"{cls.category}-{id}"

    @property
    def stream(self) -> str:
        """This aggregate's stream name."""
        return self.stream_name(self.id)

    @property
    def pending(self) -> tuple[object, ...]:
        """Events recorded since the aggregate was loaded or last saved, oldest first."""
        return tuple(self._pending)

    @property
    def saved_version(self) -> int:
        """The stream version the aggregate was loaded at (``-1`` if the stream is new)."""
        return self.version - len(self._pending)

    def record(self, event: object) -> None:
        """Apply ``event`` to the state and keep it as pending until the next save.

        Call it from command methods once every rule holds; raise a ``DomainError`` before
        calling it otherwise, so that nothing is recorded.
        """
        self.apply(event)
        self._pending.append(event)

    def apply(self, event: object) -> None:
        """Run the ``@applies`` handler for ``event`` and advance :attr:`version` by one.

        Raises ``TypeError`` when the class has no handler for the event's type: an event
        the aggregate cannot apply would silently give a wrong state on replay.
        """
        handler = self._handler_for(type(event))
        getattr(self, handler)(event)
        self.version += 1

    def mark_saved(self) -> None:
        """Forget the pending events (called by the repository once they are stored)."""
        self._pending.clear()

    def snapshot(self) -> bytes:
        """The state as bytes for a snapshot (JSON of ``self.state``).

        Override together with :meth:`restore` when the state is not a msgspec Struct,
        dataclass or other value msgspec can encode and decode back into its type.
        """
        return encode_json(self.state)

    def restore(self, data: bytes) -> None:
        """Replace the state with one produced by :meth:`snapshot`."""
        self.state = decode_payload(data, type(self.state))

    @classmethod
    def _handler_for(cls, event_type: type[Any]) -> str:
        name = cls._handlers.get(event_type)
        if name is None:
            for base in event_type.__mro__[1:]:
                name = cls._handlers.get(base)
                if name is not None:
                    cls._handlers[event_type] = name
                    break
            else:
                raise TypeError(
                    f"{cls.__qualname__} has no @applies handler for {event_type.__qualname__}"
                )
        return name

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self.id!r} v{self.version} {self.state!r}>"
