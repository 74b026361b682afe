"""Aggregate: record → apply → pending; handlers; snapshot state round trip."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from tidings.errors import DomainError
from tidings.eventsourcing import Aggregate, applies
from tidings.message import Event


class Added(Event):
    __type__ = "test_es.Added"
    n: int


class Doubled(Event):
    __type__ = "test_es.Doubled"


class SpecialAdded(Added):
    __type__ = "test_es.SpecialAdded"


class Unhandled(Event):
    __type__ = "test_es.Unhandled"


class TooBig(DomainError):
    pass


class Total(msgspec.Struct):
    value: int = 0
    seen: list[int] = msgspec.field(default_factory=list)


class Adder(Aggregate[Total]):
    category = "adder"

    def initial_state(self) -> Total:
        return Total()

    def add(self, n: int) -> None:
        if self.state.value + n > 100:
            raise TooBig(n)
        self.record(Added(n=n))

    @applies(Added)
    def _added(self, event: Added) -> None:
        self.state.value += event.n
        self.state.seen.append(event.n)

    @applies(Doubled)
    def _doubled(self, event: Doubled) -> None:
        self.state.value *= 2


class StrictAdder(Adder):
    @applies(Added)
    def _added_strict(self, event: Added) -> None:
        self.state.value += 10 * event.n


@dataclasses.dataclass
class Names:
    names: list[str] = dataclasses.field(default_factory=list)


class Renamed(Event):
    __type__ = "test_es.Renamed"
    name: str


class Person(Aggregate[Names]):
    category = "person"

    def initial_state(self) -> Names:
        return Names()

    @applies(Renamed)
    def _renamed(self, event: Renamed) -> None:
        self.state.names.append(event.name)


def test_aggregate_new_has_version_minus_one_and_no_pending() -> None:
    adder = Adder("a1")
    assert adder.version == -1
    assert adder.saved_version == -1
    assert adder.pending == ()
    assert adder.state == Total()
    assert adder.stream == "adder-a1" == Adder.stream_name("a1")


def test_aggregate_record_applies_and_keeps_pending() -> None:
    adder = Adder("a1")
    adder.add(2)
    adder.record(Doubled())
    assert adder.state.value == 4
    assert adder.version == 1
    assert adder.saved_version == -1
    assert adder.pending == (Added(n=2), Doubled())
    adder.mark_saved()
    assert adder.pending == ()
    assert adder.saved_version == 1


def test_aggregate_domain_error_records_nothing() -> None:
    adder = Adder("a1")
    adder.add(60)
    with pytest.raises(TooBig):
        adder.add(50)
    assert adder.state.value == 60
    assert adder.version == 0
    assert adder.pending == (Added(n=60),)


def test_aggregate_apply_without_handler_raises_type_error() -> None:
    with pytest.raises(TypeError, match="no @applies handler for Unhandled"):
        Adder("a1").apply(Unhandled())


def test_aggregate_base_class_handler_applies_subclass_events() -> None:
    adder = Adder("a1")
    adder.apply(SpecialAdded(n=3))
    assert adder.state.value == 3


def test_aggregate_subclass_handler_overrides_parent() -> None:
    strict = StrictAdder("s1")
    strict.apply(Added(n=2))
    strict.apply(Doubled())
    assert strict.state.value == 40
    assert Adder("a").state.value == 0


def test_aggregate_empty_id_is_rejected() -> None:
    with pytest.raises(ValueError):
        Adder("")


def test_applies_needs_an_event_class() -> None:
    with pytest.raises(TypeError):
        applies()


def test_aggregate_snapshot_restore_round_trips_struct_state() -> None:
    adder = Adder("a1")
    adder.add(1)
    adder.add(2)
    copy = Adder("a1")
    copy.restore(adder.snapshot())
    assert copy.state == adder.state
    assert isinstance(copy.state, Total)


def test_aggregate_snapshot_restore_round_trips_dataclass_state() -> None:
    person = Person("p1")
    person.record(Renamed(name="Ada"))
    copy = Person("p1")
    copy.restore(person.snapshot())
    assert copy.state == Names(names=["Ada"])
