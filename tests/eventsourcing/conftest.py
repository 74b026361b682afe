"""A started EventStore per backend: memory, SQLite (temp file) and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import require_service
from tidings.store import EventStore

PG_URL = os.environ.get("TIDINGS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def store_url(name: str, tmp_path: Path) -> str:
    if name == "memory":
        return "memory://"
    if name == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    parts = urlsplit(PG_URL)
    require_service("postgresql", parts.hostname or "127.0.0.1", parts.port or 5432)
    return PG_URL


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    async with EventStore(store_url(request.param, tmp_path)) as store:
        yield store
