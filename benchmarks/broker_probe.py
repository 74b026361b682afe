"""The leanest end-to-end loop through the App: a one-field event, a counting handler.

Usage: ``uv run python benchmarks/broker_probe.py URL N [CONCURRENCY PREFETCH] [--single]``,
e.g. ``uv run python benchmarks/broker_probe.py memory:// 100000 16 512``. Prints msg/s from
the first publish to the last ack (publish_many of 1,000 per call, or ``--single``: each
publish awaited alone). Use it for profiling (``py-spy record -- python ...``); the figures
with latencies are in ``benchmarks/broker.py``.
"""

from __future__ import annotations

import asyncio
import sys
import time

from tidings import App, Event


class Liked(Event):
    __type__ = "probe.Liked"
    post: str


async def main(url: str, n: int, concurrency: int, prefetch: int, single: bool) -> None:
    app = App(url)
    got = 0
    done = asyncio.Event()

    @app.subscribe("likes", group="counter", concurrency=concurrency, prefetch=prefetch)
    async def count(event: Liked) -> None:
        nonlocal got
        got += 1
        if got == n:
            done.set()

    async with app:
        t0 = time.perf_counter()
        if single:
            for _ in range(n):
                await app.publish("likes", Liked(post="x"))
        else:
            for _ in range(0, n, 1000):
                await app.publish_many("likes", [Liked(post="x")] * 1000)
        await done.wait()
        rate = n / (time.perf_counter() - t0)
        print(f"{url} {'single' if single else 'batched'} {rate:,.0f} msg/s")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--single"]
    if len(args) < 2:
        sys.exit(__doc__)
    asyncio.run(
        main(
            args[0],
            int(args[1]),
            int(args[2]) if len(args) > 2 else 16,
            int(args[3]) if len(args) > 3 else 512,
            "--single" in sys.argv,
        )
    )
