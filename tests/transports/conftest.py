"""Fixtures for the backend-specific transport tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tidings.transports.sqlite import SqliteTransport, create


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'broker.db'}"


@pytest.fixture
async def sqlite_transport(sqlite_url: str) -> AsyncIterator[SqliteTransport]:
    transport = create(sqlite_url, poll_interval=0.002, max_poll_interval=0.02)
    await transport.start()
    yield transport
    await transport.close()
