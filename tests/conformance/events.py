"""Event and command classes shared by the conformance suite."""

from __future__ import annotations

import dataclasses

import pydantic

from tidings import Command, Event


class Ping(Event):
    __type__ = "conformance.Ping"
    n: int
    note: str = ""


class Other(Event):
    __type__ = "conformance.Other"
    text: str


class Charge(Command):
    __type__ = "conformance.Charge"
    account: str
    cents: int


@dataclasses.dataclass
class DataPing:
    __type__ = "conformance.DataPing"
    n: int


class PydanticPing(pydantic.BaseModel):
    __type__ = "conformance.PydanticPing"
    n: int
