"""Time-ordered identifiers (UUIDv7, RFC 9562)."""

from __future__ import annotations

import random
import time
from typing import Any

__all__ = ["uuid7", "uuid7_many"]

_rand = random.getrandbits  # the module's generator is reseeded after fork
_now_ns = time.time_ns
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
_state: list[Any] = [0, 0, ""]  # last millisecond, next counter value, its hex prefix


def _advance(count: int) -> tuple[str, int]:
    """Reserve ``count`` (at most 2,048) counter values: the prefix and the first value."""
    state = _state
    ms = _now_ns() // 1_000_000
    if ms > state[0]:
        state[0] = ms
        state[2] = f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7"
        first = _rand(8)
    else:
        first = state[1]
    if first + count > 0x1000:  # the counter would overflow: borrow the next millisecond
        state[0] += 1
        state[2] = f"{state[0] >> 16:08x}-{state[0] & 0xFFFF:04x}-7"
        first = 0
    state[1] = first + count
    return state[2], first


def uuid7_many(count: int) -> list[str]:
    """``count`` new UUIDv7 strings, in increasing order (cheaper per id than :func:`uuid7`).

    The 12-bit ``rand_a`` field counts within a millisecond (RFC 9562 method 1), so ids made
    in one thread stay monotonic even by the thousand per millisecond; the 62 random bits of
    ``rand_b`` keep ids of other threads and processes apart. No lock: this runs for every
    message, and the counter is an ordering aid, not a uniqueness guarantee.
    """
    out: list[str] = []
    variant = _VARIANT
    while count > 0:
        step = min(count, 0x800)
        prefix, seq = _advance(step)
        rnd = f"{_rand(64 * step):0{16 * step}x}"
        for i in range(step):
            j = 16 * i
            out.append(
                f"{prefix}{seq + i:03x}-{variant[rnd[j]]}{rnd[j + 1 : j + 4]}-{rnd[j + 4 : j + 16]}"
            )
        count -= step
    return out


def uuid7() -> str:
    """One new UUIDv7 string (see :func:`uuid7_many`)."""
    prefix, seq = _advance(1)
    rnd = f"{_rand(64):016x}"
    return f"{prefix}{seq:03x}-{_VARIANT[rnd[0]]}{rnd[1:4]}-{rnd[4:]}"
