"""A consumer process for the multi-process tests: ``python -m tests.conformance.worker_process``.

Arguments: URL TOPIC GROUP LOGFILE HANDLER_SECONDS LEASE_SECONDS. Appends ``start N`` before
and ``done N`` after each handler call to LOGFILE (flushed), so the parent test can tell what
was in flight when it killed this process.
"""

from __future__ import annotations

import asyncio
import sys

from tests.conformance.events import Ping
from tidings import App


def main() -> None:
    url, topic, group, logfile, seconds, lease = sys.argv[1:7]
    app = App(url, grace=1.0)
    log = open(logfile, "a", buffering=1)  # noqa: SIM115

    @app.subscribe(topic, group=group, concurrency=4, timeout=float(lease) / 2, lease=float(lease))
    async def handle(event: Ping) -> None:
        log.write(f"start {event.n}\n")
        await asyncio.sleep(float(seconds))
        log.write(f"done {event.n}\n")

    try:
        asyncio.run(app.run())
    finally:
        log.close()


if __name__ == "__main__":
    main()
