"""JSON encoding of payloads: msgspec Structs (fast path), dataclasses, pydantic v2 models."""

from __future__ import annotations

from typing import Any

import msgspec

from tidings.errors import DecodeError, EncodeError, SchemaValidationError

__all__ = ["decode_json", "decode_payload", "encode_json", "encode_payload"]


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    raise NotImplementedError(f"cannot encode objects of type {type(obj).__name__}")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_any_decoder = msgspec.json.Decoder()


def encode_json(obj: Any) -> bytes:
    """Encode any JSON-able value (incl. Structs, dataclasses, pydantic models)."""
    try:
        return _encoder.encode(obj)
    except (TypeError, NotImplementedError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {type(obj).__name__} as JSON: {exc}") from exc


encode_payload = encode_json


def decode_json(data: bytes | str) -> Any:
    """Decode JSON into plain Python values; raise :class:`DecodeError` on malformed input."""
    try:
        return _any_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from exc


def decode_payload(data: bytes | str, cls: type[Any]) -> Any:
    """Decode JSON into an instance of ``cls``.

    Raises :class:`DecodeError` when the body is not JSON and :class:`SchemaValidationError`
    when it is JSON that does not fit ``cls``.
    """
    validate = getattr(cls, "model_validate_json", None)
    if validate is not None:
        try:
            return validate(data)
        except ValueError as exc:
            if "Invalid JSON" in str(exc) or "json_invalid" in str(exc):
                raise DecodeError(f"body is not valid JSON: {exc}") from exc
            raise SchemaValidationError(f"body does not match {cls.__name__}: {exc}") from exc
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders[cls] = msgspec.json.Decoder(cls)
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise SchemaValidationError(f"body does not match {cls.__name__}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from exc
