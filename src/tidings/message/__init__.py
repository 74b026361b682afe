"""Messages: CloudEvents envelope, codec, type registry."""

from tidings.message.codec import decode_json, decode_payload, encode_json, encode_payload
from tidings.message.envelope import (
    CE_PREFIX,
    Envelope,
    Message,
    ce_headers,
    format_time,
    parse_time,
)
from tidings.message.ids import uuid7, uuid7_many
from tidings.message.registry import (
    Command,
    Event,
    TypeRegistry,
    default_registry,
    derive_type_name,
    is_payload_class,
    register_type,
    type_name_of,
)
from tidings.message.upcasting import Upcasters, default_upcasters, upcaster

__all__ = [
    "CE_PREFIX",
    "Command",
    "Envelope",
    "Event",
    "Message",
    "TypeRegistry",
    "Upcasters",
    "ce_headers",
    "decode_json",
    "decode_payload",
    "default_registry",
    "default_upcasters",
    "derive_type_name",
    "encode_json",
    "encode_payload",
    "format_time",
    "is_payload_class",
    "parse_time",
    "register_type",
    "type_name_of",
    "upcaster",
    "uuid7",
    "uuid7_many",
]
