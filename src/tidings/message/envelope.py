"""The CloudEvents 1.0 envelope and its binary-mode form, the transport :class:`Message`."""

from __future__ import annotations

import base64
import time as _time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from tidings.errors import DecodeError
from tidings.message.ids import uuid7

__all__ = ["CE_PREFIX", "Envelope", "Message", "ce_headers", "format_time", "parse_time"]

CE_PREFIX = "ce-"
_CE_ATTRS = (
    "type",
    "source",
    "specversion",
    "time",
    "subject",
    "correlationid",
    "causationid",
    "partitionkey",
    "dataversion",
)


class Message(msgspec.Struct, kw_only=True):
    """What a transport moves: one CloudEvent in binary mode.

    ``headers`` hold the CloudEvents attributes as ``ce-<name>`` (HTTP/NATS binding names),
    ``content-type``, and the user's own headers; ``body`` is the encoded data. Three
    attributes are implied when absent, to keep every stored and moved message small:
    ``ce-specversion`` (``1.0``), ``ce-source`` (``tidings``) and ``content-type``
    (``application/json``); :meth:`Envelope.from_message` fills them in, and a transport
    binding to a wire protocol (Kafka ``ce_``, AMQP ``cloudEvents:``) writes them out with
    its own prefix. ``deliver_at`` and ``expires_at`` are Unix times (seconds).
    """

    id: str
    topic: str
    body: bytes
    headers: dict[str, str] = {}
    key: str | None = None
    deliver_at: float | None = None
    expires_at: float | None = None


_second_cache: tuple[int, str] = (-1, "")


def format_time(ts: float) -> str:
    """Unix time → RFC 3339 with microseconds and ``Z``."""
    global _second_cache
    sec = int(ts)
    cached_sec, prefix = _second_cache
    if sec != cached_sec:
        prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_cache = (sec, prefix)
    return f"{prefix}.{int((ts - sec) * 1_000_000):06d}Z"


def parse_time(value: str) -> datetime:
    """RFC 3339 → aware datetime."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DecodeError(f"invalid RFC 3339 time {value!r}") from exc


DEFAULT_SOURCE = "tidings"
JSON = "application/json"


def ce_headers(
    type: str,
    time: str,
    *,
    source: str = DEFAULT_SOURCE,
    subject: str | None = None,
    correlationid: str | None = None,
    causationid: str | None = None,
    partitionkey: str | None = None,
    dataversion: int = 1,
    datacontenttype: str = JSON,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The binary-mode headers of one event: ``extra`` (user headers) plus the ``ce-*``
    attributes, leaving out the implied ones (see :class:`Message`)."""
    headers = dict(extra) if extra else {}
    headers[CE_PREFIX + "type"] = type
    headers[CE_PREFIX + "time"] = time
    if source != DEFAULT_SOURCE:
        headers[CE_PREFIX + "source"] = source
    if datacontenttype != JSON:
        headers["content-type"] = datacontenttype
    for name, value in (
        ("subject", subject),
        ("correlationid", correlationid),
        ("causationid", causationid),
        ("partitionkey", partitionkey),
    ):
        if value is not None:
            headers[CE_PREFIX + name] = value
    if dataversion != 1:
        headers[CE_PREFIX + "dataversion"] = str(dataversion)
    return headers


class Envelope(msgspec.Struct, kw_only=True, frozen=True):
    """A CloudEvents 1.0 event: attributes, the tidings extensions and the encoded data."""

    id: str
    type: str
    source: str = DEFAULT_SOURCE
    specversion: str = "1.0"
    time: str = ""
    subject: str | None = None
    datacontenttype: str = JSON
    data: bytes = b""
    correlationid: str | None = None
    causationid: str | None = None
    partitionkey: str | None = None
    dataversion: int = 1
    headers: dict[str, str] = {}

    @classmethod
    def new(
        cls,
        type: str,
        data: bytes,
        *,
        source: str = DEFAULT_SOURCE,
        subject: str | None = None,
        key: str | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
        dataversion: int = 1,
        headers: dict[str, str] | None = None,
    ) -> Envelope:
        """Make a new envelope with a fresh UUIDv7 id and the current time.

        The correlation id defaults to the envelope's own id (a new conversation).
        """
        eid = uuid7()
        return cls(
            id=eid,
            type=type,
            source=source,
            time=format_time(_time.time()),
            subject=subject,
            data=data,
            correlationid=correlationid or eid,
            causationid=causationid,
            partitionkey=key,
            dataversion=dataversion,
            headers=headers or {},
        )

    def to_message(
        self,
        topic: str,
        *,
        deliver_at: float | None = None,
        expires_at: float | None = None,
    ) -> Message:
        """Binary-mode form for a transport."""
        return Message(
            id=self.id,
            topic=topic,
            body=self.data,
            headers=ce_headers(
                self.type,
                self.time,
                source=self.source,
                subject=self.subject,
                correlationid=self.correlationid,
                causationid=self.causationid,
                partitionkey=self.partitionkey,
                dataversion=self.dataversion,
                datacontenttype=self.datacontenttype,
                extra=self.headers,
            ),
            key=self.partitionkey,
            deliver_at=deliver_at,
            expires_at=expires_at,
        )

    @classmethod
    def from_message(cls, message: Message) -> Envelope:
        """Rebuild the envelope from a transport message.

        Raises :class:`DecodeError` when required CloudEvents attributes are missing.
        """
        attrs: dict[str, Any] = {}
        user: dict[str, str] = {}
        for k, v in message.headers.items():
            if k.startswith(CE_PREFIX):
                attrs[k[len(CE_PREFIX) :]] = v
            elif k != "content-type":
                user[k] = v
        etype = attrs.pop("type", None)
        if not etype:
            raise DecodeError(f"message {message.id} has no ce-type header (not a CloudEvent)")
        try:
            version = int(attrs.pop("dataversion", 1))
        except ValueError as exc:
            raise DecodeError(f"message {message.id} has a non-integer ce-dataversion") from exc
        known = {k: attrs[k] for k in _CE_ATTRS if k in attrs}
        return cls(
            id=message.id,
            type=etype,
            data=message.body,
            datacontenttype=message.headers.get("content-type", JSON),
            dataversion=version,
            headers=user,
            **known,
        )

    def to_structured(self) -> dict[str, Any]:
        """Structured-mode JSON object (data decoded when it is JSON)."""
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": self.time,
            "datacontenttype": self.datacontenttype,
        }
        for name in ("subject", "correlationid", "causationid", "partitionkey"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.dataversion != 1:
            out["dataversion"] = self.dataversion
        out.update(self.headers)
        try:
            out["data"] = msgspec.json.decode(self.data) if self.data else None
        except msgspec.DecodeError:
            out["data_base64"] = base64.b64encode(self.data).decode()
        return out
