"""Envelope, codec, registry and id generation."""

from __future__ import annotations

import dataclasses
import multiprocessing
import uuid

import msgspec
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings import ConfigurationError, DecodeError, Envelope, Event, UnknownEventType
from tidings.errors import SchemaValidationError
from tidings.message import (
    Message,
    TypeRegistry,
    decode_payload,
    encode_json,
    parse_time,
    type_name_of,
    uuid7,
)


class Opened(Event):
    __type__ = "messagetest.Opened"
    account: str
    cents: int = 0


def test_message_uuid7_is_version_7_and_monotonic() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def _child_ids(_: int) -> list[str]:
    return [uuid7() for _ in range(2000)]


def test_message_uuid7_unique_across_forked_processes() -> None:
    with multiprocessing.get_context("fork").Pool(2) as pool:
        batches = pool.map(_child_ids, range(4))
    flat = [i for b in batches for i in b]
    assert len(set(flat)) == len(flat)


@given(
    data=st.binary(max_size=200),
    subject=st.none() | st.text(max_size=30),
    key=st.none() | st.text(min_size=1, max_size=30),
    headers=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True).filter(
            lambda k: not k.startswith("ce-") and k != "content-type"
        ),
        st.text(max_size=20),
        max_size=4,
    ),
)
def test_message_envelope_binary_mode_roundtrip(
    data: bytes, subject: str | None, key: str | None, headers: dict[str, str]
) -> None:
    env = Envelope.new("x.Y", data, subject=subject, key=key, headers=headers, causationid="c")
    assert Envelope.from_message(env.to_message("t")) == env


def test_message_envelope_without_type_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="no ce-type"):
        Envelope.from_message(Message(id="1", topic="t", body=b"{}"))


def test_message_envelope_structured_form_is_cloudevents_json() -> None:
    env = Envelope.new("shop.OrderPlaced", b'{"a":1}', subject="order-1")
    out = env.to_structured()
    assert out["specversion"] == "1.0" and out["type"] == "shop.OrderPlaced"
    assert out["data"] == {"a": 1} and out["subject"] == "order-1"
    assert parse_time(out["time"]).tzinfo is not None


def test_message_registry_derives_and_rejects_conflicting_names() -> None:
    reg = TypeRegistry()

    @dataclasses.dataclass
    class Thing:
        x: int

    name = reg.register(Thing)
    assert (
        name == "tests.test_message_registry_derives_and_rejects_conflicting_names.<locals>.Thing"
    )
    assert reg.resolve(name) is Thing

    class Other(msgspec.Struct):
        y: int

    with pytest.raises(ConfigurationError, match="already registered"):
        reg.register(Other, name)
    with pytest.raises(UnknownEventType, match="register its class"):
        reg.resolve("nope.Nope")


def test_message_event_subclass_registers_its_declared_name() -> None:
    assert type_name_of(Opened) == "messagetest.Opened"


def test_message_codec_handles_struct_dataclass_pydantic() -> None:
    @dataclasses.dataclass
    class D:
        n: int

    class P(pydantic.BaseModel):
        n: int

    for cls in (D, P):
        assert decode_payload(encode_json(cls(n=3)), cls) == cls(n=3)
    assert decode_payload(encode_json(Opened(account="a")), Opened) == Opened(account="a")


@pytest.mark.parametrize("cls", [Opened])
def test_message_codec_errors_are_specific(cls: type) -> None:
    with pytest.raises(DecodeError):
        decode_payload(b"{oops", cls)
    with pytest.raises(SchemaValidationError):
        decode_payload(b'{"account": 5}', cls)


def test_message_codec_pydantic_errors_are_specific() -> None:
    class P(pydantic.BaseModel):
        n: int

    with pytest.raises(DecodeError):
        decode_payload(b"{oops", P)
    with pytest.raises(SchemaValidationError):
        decode_payload(b'{"n": "x"}', P)
