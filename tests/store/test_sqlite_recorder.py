"""SQLite specifics: URLs, pragmas, group commit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tidings.errors import StoreUnavailable, UnsupportedURL, WrongExpectedVersion
from tidings.store import ANY, NO_STREAM, NewEvent
from tidings.store.sqlite import SqliteRecorder, create, path_of


def test_sqlite_url_paths() -> None:
    assert path_of("sqlite:///./tidings.db") == "./tidings.db"
    assert path_of("sqlite:////abs/x.db") == "/abs/x.db"
    assert path_of("sqlite:///with%20space.db") == "with space.db"
    for bad in ("sqlite://host/x.db", "sqlite:///", "sqlite:///:memory:"):
        with pytest.raises(UnsupportedURL):
            path_of(bad)
    with pytest.raises(ValueError):
        create("sqlite:///x.db", synchronous="OFF")


async def test_sqlite_wal_and_full_sync(tmp_path: Path) -> None:
    recorder = SqliteRecorder(str(tmp_path / "a.db"))
    await recorder.start()
    try:
        con = recorder._wcon
        assert con is not None
        mode = await asyncio.get_running_loop().run_in_executor(
            recorder._writer,
            lambda: (
                con.execute("PRAGMA journal_mode").fetchone()[0],
                con.execute("PRAGMA synchronous").fetchone()[0],
            ),
        )
        assert mode == ("wal", 2)  # 2 = FULL
    finally:
        await recorder.close()
        await recorder.close()


async def test_sqlite_group_commit_batches_concurrent_appends(tmp_path: Path) -> None:
    recorder = SqliteRecorder(str(tmp_path / "a.db"))
    await recorder.start()
    batches: list[int] = []
    original = recorder._write_batch

    def spy(batch: list[Any]) -> list[Any]:
        batches.append(len(batch))
        return original(batch)

    recorder._write_batch = spy  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(
            *[
                recorder.append(f"s-{i % 7}", [NewEvent(id=f"e{i}", type="t", data=b"{}")], ANY)
                for i in range(200)
            ]
        )
        assert sorted(r.position for r in results) == list(range(1, 201))
        assert sum(batches) == 200 and len(batches) < 200
    finally:
        await recorder.close()


async def test_sqlite_one_failing_append_does_not_sink_its_batch(tmp_path: Path) -> None:
    recorder = SqliteRecorder(str(tmp_path / "a.db"))
    await recorder.start()
    try:
        outcomes = await asyncio.gather(
            recorder.append("a-1", [NewEvent(id="1", type="t", data=b"{}")], NO_STREAM),
            recorder.append("a-1", [NewEvent(id="2", type="t", data=b"{}")], NO_STREAM),
            recorder.append("b-1", [NewEvent(id="3", type="t", data=b"{}")], NO_STREAM),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], WrongExpectedVersion)
        assert [e.id for e in await recorder.read_all()] == ["1", "3"]
    finally:
        await recorder.close()


async def test_sqlite_unusable_file_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "not-a-db"
    path.write_bytes(b"this is not sqlite" * 100)
    recorder = SqliteRecorder(str(path))
    with pytest.raises(StoreUnavailable):
        await recorder.start()
    with pytest.raises(StoreUnavailable):
        await recorder.read_all()
