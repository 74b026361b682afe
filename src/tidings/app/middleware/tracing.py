"""Tracing: log each handled message with its correlation and causation ids and duration."""

from __future__ import annotations

import logging
import time
from typing import Any

from tidings.app.context import Context
from tidings.app.handler import Handler

__all__ = ["Tracing"]


class Tracing:
    """Middleware that logs start, outcome and duration of every handler call.

    Records go to ``logger`` (default ``tidings.trace``) with ``extra`` fields
    ``message_id``, ``correlation_id``, ``causation_id``, ``topic``, ``group``, ``attempt``,
    ``duration_ms`` and ``outcome`` (``ok`` or the exception type), so a JSON log handler can
    rebuild a conversation from its correlation id.
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger("tidings.trace")
        self.level = level

    def __call__(self, handler: Handler) -> Handler:
        logger, level = self.logger, self.level

        async def traced(payload: Any, ctx: Context) -> None:
            if not logger.isEnabledFor(level):
                await handler(payload, ctx)
                return
            started = time.perf_counter()
            outcome = "ok"
            try:
                await handler(payload, ctx)
            except BaseException as exc:
                outcome = type(exc).__name__
                raise
            finally:
                ms = (time.perf_counter() - started) * 1000
                env = ctx.envelope
                logger.log(
                    level,
                    "%s %s/%s id=%s corr=%s cause=%s attempt=%d %.2fms %s",
                    env.type,
                    ctx.topic,
                    ctx.group,
                    env.id,
                    env.correlationid,
                    env.causationid,
                    ctx.attempt,
                    ms,
                    outcome,
                    extra={
                        "message_id": env.id,
                        "correlation_id": env.correlationid,
                        "causation_id": env.causationid,
                        "topic": ctx.topic,
                        "group": ctx.group,
                        "attempt": ctx.attempt,
                        "duration_ms": ms,
                        "outcome": outcome,
                    },
                )

        return traced
