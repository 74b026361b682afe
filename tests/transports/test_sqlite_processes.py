"""Real OS processes sharing one SQLite broker file: competing consumers and kill -9."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from tidings.message import Message
from tidings.transports.sqlite import create

# The child uses the transport API only. It prints "ready", then "got <id> <attempt>" for
# each delivery and "acked <id>" after acking it; in "hang" mode it stops mid-handler,
# holding its leases, until killed. It exits once the stop file exists.
CONSUMER = """
import asyncio, os, sys
from tidings.transports.sqlite import create

async def main(url, group, lease, mode, stop):
    async with create(url, poll_interval=0.002, max_poll_interval=0.02) as transport:
        sub = await transport.subscribe("jobs", group, lease=float(lease))
        print("ready", flush=True)
        while not os.path.exists(stop):
            try:
                batch = await asyncio.wait_for(sub.fetch(5), 0.1)
            except TimeoutError:
                continue
            for d in batch:
                print("got", d.message.id, d.attempt, flush=True)
            if mode == "hang":
                await asyncio.sleep(3600)
            for d in batch:
                await asyncio.sleep(0.002)  # the handler's work
                await d.ack()
                print("acked", d.message.id, flush=True)
        await sub.close()

asyncio.run(main(*sys.argv[1:]))
"""


class Consumer:
    def __init__(self, proc: asyncio.subprocess.Process, progress: asyncio.Condition) -> None:
        self.proc = proc
        self.progress = progress  # notified after every line the child prints
        self.got: list[tuple[str, int]] = []
        self.acked: list[str] = []
        self.ready = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, url: str, lease: float, mode: str, stop: Path, progress: asyncio.Condition
    ) -> Consumer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CONSUMER,
            url,
            "workers",
            str(lease),
            mode,
            str(stop),
            stdout=asyncio.subprocess.PIPE,
        )
        consumer = cls(proc, progress)
        await asyncio.wait_for(consumer.ready.wait(), 30)
        return consumer

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            word, *rest = raw.decode().split()
            if word == "ready":
                self.ready.set()
            elif word == "got":
                self.got.append((rest[0], int(rest[1])))
            elif word == "acked":
                self.acked.append(rest[0])
            async with self.progress:
                self.progress.notify_all()

    async def wait(self) -> int:
        code = await asyncio.wait_for(self.proc.wait(), 30)
        await self.reader
        return code


async def until(progress: asyncio.Condition, condition: Callable[[], bool]) -> None:
    async with progress:
        await asyncio.wait_for(progress.wait_for(condition), 30)


async def test_sqlite_two_processes_share_one_group(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    stop = tmp_path / "stop"
    progress = asyncio.Condition()
    async with create(url) as transport:
        await transport.ensure_group("jobs", "workers")
        consumers = await asyncio.gather(
            *(Consumer.start(url, 30, "work", stop, progress) for _ in range(2))
        )
        expected = {f"m{n}" for n in range(200)}
        await transport.publish([Message(id=i, topic="jobs", body=b"{}") for i in sorted(expected)])
        await until(progress, lambda: {i for c in consumers for i in c.acked} == expected)
        stop.touch()
        assert [await c.wait() for c in consumers] == [0, 0]
        first, second = (c.acked for c in consumers)
        assert first and second, "both processes got work"
        assert sorted(first + second) == sorted(expected)  # and no message twice
        [stats] = await transport.stats()
        assert stats.groups[0].pending == 0


async def test_sqlite_killed_consumer_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    stop = tmp_path / "stop"
    progress = asyncio.Condition()
    async with create(url) as transport:
        await transport.ensure_group("jobs", "workers")
        expected = {f"m{n}" for n in range(10)}
        await transport.publish([Message(id=i, topic="jobs", body=b"{}") for i in sorted(expected)])
        doomed = await Consumer.start(url, 1.0, "hang", stop, progress)
        await until(progress, lambda: len(doomed.got) == 5)  # mid-handler, holding 5 leases
        survivor = await Consumer.start(url, 30, "work", stop, progress)
        doomed.proc.send_signal(signal.SIGKILL)
        assert await doomed.wait() == -signal.SIGKILL
        await until(progress, lambda: set(survivor.acked) == expected)
        stop.touch()
        assert await survivor.wait() == 0
        held = {mid for mid, _ in doomed.got}
        redelivered = {mid: attempt for mid, attempt in survivor.got if mid in held}
        assert redelivered == dict.fromkeys(held, 2)  # after the lease, with attempt 2
        [stats] = await transport.stats()
        assert stats.groups[0].pending == 0
