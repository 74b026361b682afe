"""A started EventStore per backend: memory, SQLite (temp file) and PostgreSQL when reachable."""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tidings.store import EventStore

PG_URL = os.environ.get("TIDINGS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


def store_url(name: str, tmp_path: Path) -> str:
    if name == "memory":
        return "memory://"
    if name == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    if importlib.util.find_spec("tidings.store.postgres") is None:
        pytest.skip("postgresql: the tidings.store.postgres backend is not present")
    if not _pg_reachable():
        pytest.skip(f"postgresql: no server at {PG_URL}")
    return PG_URL


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    async with EventStore(store_url(request.param, tmp_path)) as store:
        yield store
