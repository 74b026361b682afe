"""Event and command classes, and the registry mapping type names to classes."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, ClassVar

import msgspec

from tidings.errors import ConfigurationError, UnknownEventType

__all__ = [
    "Command",
    "Event",
    "TypeRegistry",
    "default_registry",
    "register_type",
    "type_name_of",
]


class TypeRegistry:
    """Maps type names (``shop.OrderPlaced``) to classes and back.

    Safe to use from several threads. A name maps to exactly one class; registering a
    different class under a taken name raises :class:`ConfigurationError`.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, type[Any]] = {}
        self._by_class: dict[type[Any], str] = {}
        self._lock = threading.Lock()

    def register(self, cls: type[Any], name: str | None = None) -> str:
        """Register ``cls`` under ``name`` (default: derived) and return the name."""
        name = name or _declared_name(cls) or derive_type_name(cls)
        with self._lock:
            known = self._by_name.get(name)
            if known is not None and known is not cls and _qual(known) != _qual(cls):
                raise ConfigurationError(
                    f"type name {name!r} is already registered for {_qual(known)}; "
                    f"give {_qual(cls)} another name (class attribute __type__)"
                )
            self._by_name[name] = cls
            self._by_class[cls] = name
        return name

    def name_of(self, cls: type[Any]) -> str:
        """Return the registered name of ``cls``, registering it on first use."""
        name = self._by_class.get(cls)
        if name is None:
            name = self.register(cls)
        return name

    def resolve(self, name: str) -> type[Any]:
        """Return the class registered under ``name`` or raise :class:`UnknownEventType`."""
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownEventType(name) from None

    def get(self, name: str) -> type[Any] | None:
        """Return the class registered under ``name``, or None."""
        return self._by_name.get(name)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._by_name)


def _qual(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _declared_name(cls: type[Any]) -> str | None:
    name = cls.__dict__.get("__type__")
    return name if isinstance(name, str) else None


def derive_type_name(cls: type[Any]) -> str:
    """Derive ``package.ClassName`` from the class's top-level package."""
    module = cls.__module__.split(".")[0]
    if module in ("__main__", "builtins", "__mp_main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


default_registry = TypeRegistry()


def register_type(cls: type[Any], name: str | None = None) -> str:
    """Register a payload class (Struct, dataclass or pydantic model) in the default registry."""
    return default_registry.register(cls, name)


def type_name_of(cls: type[Any]) -> str:
    """The registered type name of ``cls`` in the default registry."""
    return default_registry.name_of(cls)


class Event(msgspec.Struct, kw_only=True):
    """Base class for events: something that happened; broadcast to every subscriber group.

    Subclasses are registered automatically. Set ``__type__`` to choose the type name
    (default ``<top package>.<ClassName>``) and ``__version__`` for schema evolution.
    """

    __type__: ClassVar[str]
    __version__: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        default_registry.register(cls)


class Command(msgspec.Struct, kw_only=True):
    """Base class for commands (tasks): a request handled by exactly one handler."""

    __type__: ClassVar[str]
    __version__: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        default_registry.register(cls)


def is_payload_class(cls: object) -> bool:
    """True for classes the codec can encode: Struct, dataclass or pydantic model."""
    if not isinstance(cls, type):
        return False
    if issubclass(cls, msgspec.Struct) or dataclasses.is_dataclass(cls):
        return True
    return hasattr(cls, "model_validate_json")
