"""Transport-level throughput probe for ``sqlite://`` (not a test; prints figures).

    uv run python benchmarks/_sqlite_transport_probe.py [N]

1. batched: publish N messages in batches of 1,000 while one consumer fetches 500 at a time
   and acks each batch concurrently (the acks are group-committed); end-to-end rate.
2. concurrent single publishes: 200 tasks each awaiting ``publish([one])`` in turn.
3. sequential single publishes: one task awaiting each ``publish([one])`` (fsync-bound).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from tidings.message import Message
from tidings.transports import Subscription, open_transport


async def batched(path: Path, total: int, consumers: int = 1) -> float:
    async with open_transport(f"sqlite:///{path}", retention=0) as t:
        subs = [await t.subscribe("bench", "g") for _ in range(consumers)]
        body = b'{"n": 1}' * 8
        start = time.perf_counter()

        async def produce() -> None:
            for i in range(0, total, 1000):
                await t.publish(
                    [Message(id=str(i + j), topic="bench", body=body) for j in range(1000)]
                )

        done = 0

        async def consume(sub: Subscription) -> None:
            nonlocal done
            acks: set[asyncio.Task[None]] = set()
            while done < total:
                try:
                    batch = await asyncio.wait_for(sub.fetch(500), 0.2)
                except TimeoutError:
                    continue  # the other consumer took the last ones
                done += len(batch)
                task = asyncio.ensure_future(asyncio.gather(*(d.ack() for d in batch)))
                acks.add(task)
                task.add_done_callback(acks.discard)
            await asyncio.gather(*acks)

        await asyncio.gather(produce(), *(consume(sub) for sub in subs))
        elapsed = time.perf_counter() - start
        for sub in subs:
            await sub.close()
    return total / elapsed


async def singles(path: Path, total: int, publishers: int = 200) -> float:
    async with open_transport(f"sqlite:///{path}", retention=0) as t:
        await t.ensure_group("single", "g")
        per = total // publishers

        async def publisher(p: int) -> None:
            for i in range(per):
                await t.publish([Message(id=f"{p}-{i}", topic="single", body=b"{}")])

        start = time.perf_counter()
        await asyncio.gather(*(publisher(p) for p in range(publishers)))
        elapsed = time.perf_counter() - start
    return per * publishers / elapsed


async def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory() as tmp:
        for consumers in (1, 2):
            rate = await batched(Path(tmp) / f"a{consumers}.db", total, consumers)
            print(
                f"batched publish(1000) -> fetch(500) -> ack, {consumers} consumer(s):"
                f" {rate:,.0f} msg/s ({total:,} msgs)"
            )
        rate = await singles(Path(tmp) / "b.db", 20_000)
        print(f"200 concurrent single-message publishers: {rate:,.0f} msg/s (20,000 msgs)")
        rate = await singles(Path(tmp) / "c.db", 2_000, publishers=1)
        print(f"1 sequential single-message publisher: {rate:,.0f} msg/s (2,000 msgs)")


if __name__ == "__main__":
    asyncio.run(main())
