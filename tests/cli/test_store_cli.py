"""``tidings store`` commands against a temporary SQLite store, through CliRunner."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tidings.cli.store import store_app
from tidings.message import Event
from tidings.store import EventStore


class Rang(Event):
    __type__ = "test_cli.Rang"
    n: int


runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A store with bell-1 (3 events), bell-2 (1 event) and clock-1 (2 events)."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    async def fill() -> None:
        async with EventStore(url) as store:
            await store.append("bell-1", [Rang(n=1), Rang(n=2)])
            await store.append("clock-1", [Rang(n=10)])
            await store.append("bell-2", [Rang(n=20)])
            await store.append("bell-1", [Rang(n=3)])
            await store.append("clock-1", [Rang(n=11)])

    asyncio.run(fill())
    return url


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(store_app, list(args))
    assert not isinstance(result.exception, AssertionError)
    return result.exit_code, result.stdout, result.stderr


def test_store_streams_lists_every_stream(url: str) -> None:
    code, out, _ = invoke("streams", "--url", url)
    assert code == 0
    for name in ("bell-1", "bell-2", "clock-1"):
        assert name in out


def test_store_streams_prefix_filters_as_json(url: str) -> None:
    code, out, _ = invoke("streams", "--prefix", "bell-", "--json", "--url", url)
    assert code == 0
    rows = json.loads(out)
    assert [(r["stream"], r["version"], r["events"]) for r in rows] == [
        ("bell-1", 2, 3),
        ("bell-2", 0, 1),
    ]


def test_store_url_from_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_STORE_URL", url)
    code, out, _ = invoke("streams", "--json")
    assert code == 0
    assert len(json.loads(out)) == 3


def test_store_read_prints_events(url: str) -> None:
    code, out, _ = invoke("read", "bell-1", "--url", url)
    assert code == 0
    assert "test_cli.Rang" in out
    assert '{"n":3}' in out


def test_store_read_json_up_to_version(url: str) -> None:
    code, out, _ = invoke("read", "bell-1", "--version", "1", "--json", "--url", url)
    assert code == 0
    events = json.loads(out)
    assert [(e["version"], e["data"]) for e in events] == [(0, {"n": 1}), (1, {"n": 2})]
    assert events[0]["stream"] == "bell-1"
    assert events[0]["position"] == 1


def test_store_read_as_of_time(url: str) -> None:
    code, out, _ = invoke(
        "read", "bell-1", "--as-of", "2001-01-01T00:00:00Z", "--json", "--url", url
    )
    assert code == 0
    assert json.loads(out) == []
    code, out, _ = invoke(
        "read", "bell-1", "--as-of", str(time.time() + 60), "--json", "--url", url
    )
    assert code == 0
    assert len(json.loads(out)) == 3


def test_store_read_missing_stream_exits_1(url: str) -> None:
    code, _, err = invoke("read", "bell-9", "--url", url)
    assert code == 1
    assert "bell-9" in err


def test_store_read_bad_time_exits_2(url: str) -> None:
    code, _, err = invoke("read", "bell-1", "--as-of", "yesterday", "--url", url)
    assert code == 2
    assert "yesterday" in err


def test_store_tail_from_position_with_limit(url: str) -> None:
    code, out, _ = invoke("tail", "--from", "2", "--limit", "3", "--url", url)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].split()[0] == "2"
    assert "clock-1@0" in lines[1]


def test_store_tail_category_json(url: str) -> None:
    code, out, _ = invoke(
        "tail", "--from", "1", "--category", "clock", "--limit", "2", "--json", "--url", url
    )
    assert code == 0
    events = [json.loads(line) for line in out.strip().splitlines()]
    assert [(e["stream"], e["data"]["n"]) for e in events] == [("clock-1", 10), ("clock-1", 11)]


def test_store_stats_counts(url: str) -> None:
    code, out, _ = invoke("stats", "--json", "--url", url)
    assert code == 0
    stats = json.loads(out)
    assert stats["head"] == 6
    assert stats["streams"] == 3
    assert stats["events"] == 6
    assert stats["categories"] == {
        "bell": {"streams": 2, "events": 4},
        "clock": {"streams": 1, "events": 2},
    }
    code, out, _ = invoke("stats", "--url", url)
    assert code == 0
    assert "bell" in out


def test_store_bad_url_exits_2_without_traceback() -> None:
    code, out, err = invoke("streams", "--url", "nosuch://x")
    assert code == 2
    assert "nosuch" in err
    assert "Traceback" not in out + err
