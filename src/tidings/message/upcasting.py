"""Upcasters: functions that turn an old version of an event's data into the next version.

Stored events keep the ``dataversion`` they were written with. On read, the event store
chains the registered steps ``v → v+1 → … → target`` (the class's ``__version__``) on the
decoded JSON object, then decodes the result into the current class::

    @upcaster("bank.Deposited", 1)
    def _cents(data):
        return {**data, "cents": data.pop("amount") * 100}
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tidings.errors import MissingUpcaster

__all__ = ["MissingUpcaster", "UpcastFn", "Upcasters", "default_upcasters", "upcaster"]

UpcastFn = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    """A table of upcast steps keyed by ``(type name, from_version)``. Thread-safe."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], UpcastFn] = {}
        self._lock = threading.Lock()

    def register(self, type_name: str, from_version: int) -> Callable[[UpcastFn], UpcastFn]:
        """Decorator: ``fn`` upgrades data of ``type_name`` from ``from_version`` to the next.

        Registering a second function for the same step replaces the first.
        """

        def decorate(fn: UpcastFn) -> UpcastFn:
            with self._lock:
                self._steps[(type_name, from_version)] = fn
            return fn

        return decorate

    def upcast(
        self, type_name: str, version: int, data: dict[str, Any], target: int
    ) -> dict[str, Any]:
        """Apply the steps from ``version`` up to ``target``; a missing step raises
        :class:`MissingUpcaster` (so does data newer than ``target``)."""
        if version > target:
            raise MissingUpcaster(type_name, version, target)
        while version < target:
            step = self._steps.get((type_name, version))
            if step is None:
                raise MissingUpcaster(type_name, version, target)
            data = step(data)
            version += 1
        return data

    def has(self, type_name: str, from_version: int) -> bool:
        return (type_name, from_version) in self._steps


default_upcasters = Upcasters()
upcaster = default_upcasters.register
