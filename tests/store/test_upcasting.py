"""Upcaster chains: register steps, chain them, fail clearly on a missing step."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.message.upcasting import MissingUpcaster, Upcasters


def test_upcasting_chains_steps_in_order() -> None:
    ups = Upcasters()

    @ups.register("t.E", 1)
    def _one(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "b": data["a"] * 2}

    @ups.register("t.E", 2)
    def _two(data: dict[str, Any]) -> dict[str, Any]:
        return {"c": data["b"] + 1}

    assert ups.upcast("t.E", 1, {"a": 1}, 3) == {"c": 3}
    assert ups.upcast("t.E", 2, {"b": 5}, 3) == {"c": 6}
    assert ups.upcast("t.E", 3, {"c": 0}, 3) == {"c": 0}
    assert ups.has("t.E", 1) and not ups.has("t.E", 3)


def test_upcasting_missing_step_names_type_and_version() -> None:
    ups = Upcasters()
    ups.register("t.E", 1)(lambda d: d)
    with pytest.raises(MissingUpcaster, match=r"from version 2 to 3") as info:
        ups.upcast("t.E", 1, {}, 3)
    assert (info.value.type_name, info.value.version, info.value.target) == ("t.E", 2, 3)


def test_upcasting_newer_data_than_class_is_an_error() -> None:
    with pytest.raises(MissingUpcaster, match="newer"):
        Upcasters().upcast("t.E", 4, {}, 2)


def test_upcasting_default_decorator_registers_in_default_table() -> None:
    from tidings.message.upcasting import default_upcasters, upcaster

    @upcaster("tests.store.Only", 7)
    def _step(data: dict[str, Any]) -> dict[str, Any]:
        return data

    assert default_upcasters.has("tests.store.Only", 7)
