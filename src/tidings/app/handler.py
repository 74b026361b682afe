"""Handler signatures: what the first parameter's annotation asks the decoder for."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from tidings.errors import ConfigurationError, SchemaValidationError
from tidings.message import (
    Envelope,
    Message,
    TypeRegistry,
    decode_json,
    decode_payload,
    is_payload_class,
)

__all__ = ["Decoder", "Handler", "HandlerFunc", "make_decoder"]

Handler = Callable[[Any, Any], Awaitable[None]]
"""The wrapped form every handler is called through: ``handler(payload, ctx)``."""
HandlerFunc = Callable[..., Awaitable[None]]
"""What users write: ``async def f(event)`` or ``async def f(event, ctx)``."""
Decoder = Callable[[Message, str], Any]
"""``decoder(message, type_name)`` → the handler's payload."""


def _accepted(annotation: Any) -> tuple[type[Any], ...] | None:
    """Payload classes accepted by an annotation, or None for "raw JSON is fine"."""
    if annotation in (inspect.Parameter.empty, Any, object, dict, typing.Any):
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        classes: list[type[Any]] = []
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            got = _accepted(arg)
            if got is None:
                return None
            classes.extend(got)
        return tuple(classes)
    if origin is dict:
        return None
    if is_payload_class(annotation):
        return (annotation,)
    raise ConfigurationError(
        f"handler payload annotation {annotation!r} is not a msgspec Struct, dataclass, "
        "pydantic model, Envelope, dict or a union of those"
    )


def make_decoder(func: HandlerFunc, registry: TypeRegistry) -> tuple[Decoder, bool]:
    """Build the decoder for ``func``'s first parameter; also say whether it takes ``ctx``.

    * ``Envelope`` → the raw envelope;
    * no annotation, ``dict`` or ``Any`` → the JSON body as Python values;
    * a payload class or union of them → the envelope's type is looked up in the registry
      (unknown → ``UnknownEventType``) and must be one of the accepted classes.
    """
    if not inspect.iscoroutinefunction(func):
        raise ConfigurationError(f"handler {func!r} must be an async function (async def)")
    params = list(inspect.signature(func).parameters.values())
    if not 1 <= len(params) <= 2:
        raise ConfigurationError(f"handler {func.__qualname__} must take (event) or (event, ctx)")
    hints = typing.get_type_hints(func)
    annotation = hints.get(params[0].name, inspect.Parameter.empty)
    takes_ctx = len(params) == 2
    if annotation is Envelope:
        return (lambda msg, _t: Envelope.from_message(msg)), takes_ctx
    accepted = _accepted(annotation)
    if accepted is None:
        return (lambda msg, _t: decode_json(msg.body)), takes_ctx
    for cls in accepted:
        registry.name_of(cls)

    # Per type name, the class's own JSON decoder (msgspec fast path) once it has been seen.
    fast: dict[str, Callable[[bytes], Any]] = {}

    def decode(msg: Message, type_name: str) -> Any:
        decode_body = fast.get(type_name)
        if decode_body is not None:
            try:
                return decode_body(msg.body)
            except (msgspec.ValidationError, msgspec.DecodeError):
                pass  # let decode_payload say precisely what is wrong
        cls = registry.resolve(type_name)
        if cls not in accepted:
            names = ", ".join(registry.name_of(c) for c in accepted)
            raise SchemaValidationError(
                f"message type {type_name!r} is not one this handler accepts ({names})"
            )
        payload = decode_payload(msg.body, cls)
        if (isinstance(cls, type) and issubclass(cls, msgspec.Struct)) or dataclasses.is_dataclass(
            cls
        ):
            fast[type_name] = msgspec.json.Decoder(cls).decode
        return payload

    return decode, takes_ctx
