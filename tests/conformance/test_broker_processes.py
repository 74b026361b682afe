"""Competing consumers across OS processes, and SIGKILL of a consumer mid-handler (§4.3)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conformance.conftest import needs
from tests.conformance.events import Ping
from tidings import App

ROOT = Path(__file__).resolve().parents[2]


def _spawn(url: str, log: Path, seconds: float, lease: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.conformance.worker_process",
            url,
            "jobs",
            "workers",
            str(log),
            str(seconds),
            str(lease),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _lines(log: Path, kind: str) -> list[int]:
    if not log.exists():
        return []
    return [
        int(line.split()[1])
        for line in log.read_text().splitlines()
        if line.startswith(kind + " ") and len(line.split()) == 2
    ]


async def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_two_processes_share_one_group_and_sigkill_loses_nothing(
    broker_url: str, tmp_path: Path
) -> None:
    needs(broker_url, "multi_process")
    total = 300
    publisher = App(broker_url)
    await publisher.transport.start()
    await publisher.transport.ensure_group("jobs", "workers")
    await publisher.publish_many("jobs", [Ping(n=i) for i in range(total)])

    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a = _spawn(broker_url, log_a, 0.05, 2.0)
    b = _spawn(broker_url, log_b, 0.02, 2.0)
    try:
        await _wait(
            lambda: len(_lines(log_a, "done")) >= 10 and len(_lines(log_b, "done")) >= 10,
            60,
            "both processes to do work",
        )

        def a_in_flight() -> set[int]:
            return set(_lines(log_a, "start")) - set(_lines(log_a, "done"))

        await _wait(lambda: bool(a_in_flight()), 30, "a handler in flight in process A")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed_mid_handler = set(_lines(log_a, "start")) - set(_lines(log_a, "done"))
        assert killed_mid_handler, "process A should have died inside a handler"

        def all_done() -> bool:
            return set(_lines(log_a, "done")) | set(_lines(log_b, "done")) == set(range(total))

        await _wait(all_done, 90, "every message to be handled after the kill")
        assert killed_mid_handler <= set(_lines(log_b, "done")), "leased messages were lost"
        assert _lines(log_a, "done") and _lines(log_b, "done"), "work was not shared"
        stats = {t.topic: t for t in await publisher.transport.stats()}
        group = next(g for g in stats["jobs"].groups if g.group == "workers")
        assert group.pending == 0
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        await publisher.stop()
    assert b.returncode == 0, "SIGTERM should drain and exit cleanly"
