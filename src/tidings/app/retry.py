"""The failure policy: a finite number of attempts with exponential backoff, then dead letters."""

from __future__ import annotations

import dataclasses
import random

from tidings.errors import ConfigurationError

__all__ = ["Retry"]


@dataclasses.dataclass(frozen=True)
class Retry:
    """How a failing handler is retried before its message goes to the dead-letter topic.

    Attempt ``n`` (1-based) that fails is retried after
    ``min(backoff * multiplier ** (n - 1), max_backoff)`` seconds, randomised by ``±jitter``
    (a fraction). After ``max_attempts`` failed attempts, or at once for an exception in
    ``dead_letter_on``, the message is dead-lettered. There is no "retry forever": a finite
    policy is the point (FastStream #1488).
    """

    max_attempts: int = 5
    backoff: float = 0.5
    multiplier: float = 2.0
    max_backoff: float = 60.0
    jitter: float = 0.2
    dead_letter_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("Retry.max_attempts must be at least 1")
        if self.backoff < 0 or self.multiplier < 1 or self.max_backoff < 0:
            raise ConfigurationError("Retry needs backoff >= 0, multiplier >= 1, max_backoff >= 0")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError("Retry.jitter is a fraction between 0 and 1")

    @classmethod
    def never(cls) -> Retry:
        """One attempt: a failure goes straight to the dead letters."""
        return cls(max_attempts=1)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.backoff * self.multiplier ** max(attempt - 1, 0), self.max_backoff)
        if self.jitter:
            base *= 1 + random.uniform(-self.jitter, self.jitter)
        return max(base, 0.0)

    def gives_up(self, attempt: int, error: BaseException) -> bool:
        """True when failed attempt ``attempt`` should be the last."""
        return attempt >= self.max_attempts or isinstance(error, self.dead_letter_on)
