"""PostgreSQL specifics: URL options, identifier checks, one round trip per append."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import require_service
from tidings.errors import StoreUnavailable
from tidings.store import ANY, EventStore, NewEvent
from tidings.store.postgres import PostgresRecorder, create, split_url

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def test_postgres_url_schema_option_is_stripped() -> None:
    dsn, ours = split_url("postgres://u@h:5432/db?schema=tenant_1&sslmode=disable")
    assert dsn == "postgresql://u@h:5432/db?sslmode=disable"
    assert ours == {"schema": "tenant_1"}
    recorder = create("postgresql://u@h/db?schema=s1")
    assert recorder.schema == "s1" and recorder.dsn == "postgresql://u@h/db"


@pytest.mark.parametrize("schema", ['x"; DROP', "1abc", "a" * 41, "", "sch-ema"])
def test_postgres_schema_must_be_a_plain_identifier(schema: str) -> None:
    with pytest.raises(ValueError):
        PostgresRecorder(PG_URL, schema=schema)


async def test_postgres_unreachable_is_store_unavailable() -> None:
    recorder = PostgresRecorder("postgresql://postgres@127.0.0.1:1/none", connect_timeout=2)
    with pytest.raises(StoreUnavailable):
        await recorder.start()
    with pytest.raises(StoreUnavailable):
        await recorder.append("s-1", [NewEvent(id="1", type="t", data=b"{}")], ANY)
    await recorder.close()


async def test_postgres_append_is_one_round_trip() -> None:
    require_service("postgresql", "127.0.0.1", 5432)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    store = EventStore(f"{PG_URL}?schema={schema}")
    await store.start()
    recorder: Any = store.recorder
    calls: list[str] = []
    pool = recorder.pool

    class Spy:
        async def fetch(self, query: str, *args: Any) -> Any:
            calls.append(query)
            return await pool.fetch(query, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(pool, name)

    recorder.pool = Spy()
    try:
        await store.append("acct-1", [NewEvent(id="a", type="t", data=b"{}")])
        await store.append("acct-1", [NewEvent(id="b", type="t", data=b"{}")], 0)
        assert len(calls) == 2 and all("tidings_append" in q for q in calls)
    finally:
        recorder.pool = pool
        await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await store.close()


async def test_postgres_listener_reconnects_after_being_killed() -> None:
    require_service("postgresql", "127.0.0.1", 5432)
    import asyncio
    import contextlib

    schema = f"t_{uuid.uuid4().hex[:16]}"
    store = EventStore(PG_URL, schema=schema, poll_interval=60)
    await store.start()
    recorder: Any = store.recorder
    try:
        async with contextlib.aclosing(store.subscribe()) as sub:
            await store.append("acct-1", [NewEvent(id="a", type="t", data=b"{}")])
            assert (await asyncio.wait_for(anext(sub), 5)).id == "a"
            old_pid = recorder._listener.get_server_pid()
            await recorder.pool.execute("SELECT pg_terminate_backend($1)", old_pid)
            for _ in range(200):
                if recorder._listener.get_server_pid() != old_pid:
                    break
                await asyncio.sleep(0.025)
            await store.append("acct-1", [NewEvent(id="b", type="t", data=b"{}")])
            # far sooner than the 60 s fallback poll: the new listener got the NOTIFY
            assert (await asyncio.wait_for(anext(sub), 5)).id == "b"
    finally:
        await recorder.pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await store.close()
