"""``tidings demo``: the like counter runs, drains and its totals add up."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import wait_until
from tidings.cli.demo import _summary
from tidings.cli.main import app as cli
from tidings.demo.likes import GROUPS, TOPIC, LikesDemo


def totals(output: str) -> dict[str, int]:
    """The ``name: number`` lines of the final summary."""
    found = re.findall(r"^\s+([a-z +]+):\s+(\d+)", output, re.MULTILINE)
    return {name.strip(): int(value) for name, value in found}


def test_demo_with_duration_exits_0_and_the_counts_add_up() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tidings.cli", "demo", "--duration", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = totals(proc.stdout)
    assert got["published"] > 0
    assert got["counted"] == got["published"]
    assert got["notifier saw"] == got["published"]
    assert got["flaky handled"] + got["flaky dead letters"] == got["published"]
    assert got["handled + dead"] == got["published"]
    assert "OK:" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_demo_on_a_given_url_leaves_its_topic_and_dead_letters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    result = CliRunner().invoke(cli, ["demo", "--duration", "1", "--rate", "100", "--url", url])
    assert result.exit_code == 0, result.output
    got = totals(result.stdout)
    assert got["counted"] == got["published"] > 0

    async def inspect() -> tuple[dict[str, tuple[int, int]], int]:
        again = LikesDemo(url)
        try:
            await again.app.transport.start()
            backlog = await again.pending()
            letters = await again.app.dead_letters.list(TOPIC, "flaky", limit=1_000_000)
            return backlog, len(letters)
        finally:
            await again.app.transport.close()

    backlog, dead = asyncio.run(inspect())
    assert set(backlog) == set(GROUPS)
    assert all(pending == 0 for pending, _ in backlog.values())
    assert dead == got["flaky dead letters"]


async def test_likes_demo_counts_every_like_on_memory() -> None:
    demo = LikesDemo("memory://", seed=7, flaky_rate=0.5, doomed=("post-1",))
    stop = asyncio.Event()
    async with demo.app:
        producer = asyncio.create_task(demo.produce(500, stop))
        await wait_until(lambda: demo.state.published >= 300, 60, "300 likes published")
        stop.set()
        await producer
        backlog = await demo.drain(timeout=60)
        letters = await demo.dead_letters()
    s = demo.state
    assert all(pending == 0 for pending, _ in backlog.values())
    assert s.counted == s.notified == s.published
    assert sum(s.counts.values()) == s.published
    assert s.flaky_handled + len(letters) == s.published
    assert any(d.message.key == "post-1" for d in letters)
    assert {d.reason for d in letters} == {"failed"}
    assert {d.attempts for d in letters} == {3}
    assert s.milestones == sum(n // 100 for n in s.notifier_counts.values())
    snap = demo.snapshot(top=3)
    assert snap["published"] == snap["counted"] == s.published
    assert [p["likes"] for p in snap["top_posts"]] == [n for _, n in s.counts.most_common(3)]
    assert snap["flaky"]["dead_lettered"] == len(letters)


def test_demo_summary_exits_1_and_says_what_did_not_add_up(
    capsys: pytest.CaptureFixture[str],
) -> None:
    demo = LikesDemo("memory://")
    demo.state.published = 3
    demo.state.counted_ids.update({"a", "b"})
    demo.state.notified_ids.update({"a", "b", "c"})
    demo.state.flaky_ids.update({"a", "b", "c"})
    assert _summary(demo, [], {"counter": (1, 0), "notifier": (0, 0), "flaky": (0, 0)}) == 1
    out = capsys.readouterr().out
    assert "counter counted 2 of 3 likes" in out
    assert "still pending" in out
    assert "notifier saw" not in out.split("FAILED")[-1]
