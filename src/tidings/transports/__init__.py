"""Broker transports, one module per backend, chosen by URL scheme."""

from __future__ import annotations

from tidings.config import load_backend
from tidings.transports.base import (
    Delivery,
    Features,
    GroupStats,
    StartFrom,
    Subscription,
    TopicStats,
    Transport,
)

__all__ = [
    "TRANSPORTS",
    "Delivery",
    "Features",
    "GroupStats",
    "StartFrom",
    "Subscription",
    "TopicStats",
    "Transport",
    "open_transport",
]

TRANSPORTS: dict[str, str] = {
    "memory": "tidings.transports.memory",
    "sqlite": "tidings.transports.sqlite",
}


def open_transport(url: str, **options: object) -> Transport:
    """Create (not start) the transport for ``url``; each module exposes ``create(url, **options)``.

    Raises ``UnsupportedURL`` naming the supported schemes, or ``MissingExtra`` with the
    install command when the backend's driver is not installed.
    """
    module = load_backend(url, TRANSPORTS, "broker")
    transport: Transport = module.create(url, **options)
    return transport
