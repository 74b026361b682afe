"""Broker conformance fixtures: one suite, parametrized over every transport URL.

A new backend adds one ``BACKENDS`` entry (a URL factory and, for a network service, the
port to check). Tests ask for features with ``needs(transport, "feature")``, which skips
naming the unclaimed feature.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.conftest import require_service
from tidings import App
from tidings.transports import open_transport

BrokerUrl = Callable[[], str]


def _memory(tmp: Path) -> str:
    return f"memory://conformance-{uuid.uuid4().hex}"


def _sqlite(tmp: Path) -> str:
    return f"sqlite:///{tmp}/broker-{uuid.uuid4().hex[:8]}.db"


BACKENDS: dict[str, tuple[Callable[[Path], str], tuple[str, int] | None]] = {
    "memory": (_memory, None),
    "sqlite": (_sqlite, None),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name under test."""
    name: str = request.param
    service = BACKENDS[name][1]
    if service is not None:
        require_service(name, *service)
    return name


@pytest.fixture
def broker_url(backend: str, tmp_path: Path) -> str:
    """A fresh, isolated URL on the backend under test (same URL → same broker)."""
    return BACKENDS[backend][0](tmp_path)


def needs(url: str, *features: str) -> None:
    """Skip unless the backend of ``url`` claims every feature."""
    claimed = open_transport(url).features
    for feature in features:
        if not getattr(claimed, feature):
            pytest.skip(f"{url.split('://')[0]} does not claim feature {feature!r}")


@pytest.fixture
async def app(broker_url: str) -> AsyncIterator[App]:
    """An App on the backend under test; stopped after the test."""
    a = App(broker_url, grace=2.0)
    yield a
    await a.stop()
