"""The deduplication middleware."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tidings import Deduplicate


class _Ctx:
    def __init__(self, message_id: str) -> None:
        self.group = "g"
        self.id = message_id


async def test_dedupe_never_runs_one_id_twice_at_once_even_after_a_failure() -> None:
    dedupe = Deduplicate()
    running = peak = calls = 0

    async def handler(payload: Any, ctx: Any) -> None:
        nonlocal running, peak, calls
        calls += 1
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        if calls == 1:
            raise ValueError("first attempt fails")

    wrapped = dedupe(handler)

    async def deliver(after: float) -> None:
        await asyncio.sleep(after)
        with contextlib.suppress(ValueError):
            await wrapped(None, _Ctx("m1"))

    await asyncio.gather(deliver(0), deliver(0.01), deliver(0.07))
    assert peak == 1
    assert calls == 2
    assert dedupe.skipped == 1
