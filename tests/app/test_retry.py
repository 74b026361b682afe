"""The failure policy."""

from __future__ import annotations

import pytest

from tidings import ConfigurationError, Retry


def test_retry_delay_grows_exponentially_and_caps() -> None:
    r = Retry(backoff=1, multiplier=2, max_backoff=5, jitter=0)
    assert [r.delay(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def test_retry_jitter_stays_within_its_fraction() -> None:
    r = Retry(backoff=1, multiplier=1, jitter=0.2)
    delays = [r.delay(1) for _ in range(500)]
    assert all(0.8 <= d <= 1.2 for d in delays)
    assert len(set(delays)) > 1


def test_retry_gives_up_after_max_attempts_or_listed_error() -> None:
    r = Retry(max_attempts=3, dead_letter_on=(KeyError,))
    assert not r.gives_up(2, ValueError())
    assert r.gives_up(3, ValueError())
    assert r.gives_up(1, KeyError())
    assert Retry.never().gives_up(1, ValueError())


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"backoff": -1}, {"multiplier": 0.5}, {"jitter": 2}]
)
def test_retry_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Retry(**kwargs)  # type: ignore[arg-type]
