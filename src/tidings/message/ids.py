"""Time-ordered identifiers (UUIDv7, RFC 9562)."""

from __future__ import annotations

import random
import threading
import time

__all__ = ["uuid7"]

_lock = threading.Lock()
_rand = random.getrandbits  # the module instance is reseeded after fork
_last_ms = 0
_seq = 0


def uuid7() -> str:
    """Return a new UUIDv7 as a string; ids made in one process sort in creation order.

    The 12-bit ``rand_a`` field is a counter within a millisecond (RFC 9562 method 1),
    so ids stay monotonic even when many are made in the same millisecond.
    """
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _seq = _rand(8)
        else:
            _seq += 1
            if _seq > 0xFFF:
                _last_ms += 1
                _seq = 0
            ms = _last_ms
        seq = _seq
    rand_b = _rand(62)
    return "%08x-%04x-%04x-%04x-%012x" % (  # noqa: UP031  (fastest formatting here)
        ms >> 16,
        ms & 0xFFFF,
        0x7000 | seq,
        0x8000 | (rand_b >> 48),
        rand_b & 0xFFFF_FFFF_FFFF,
    )
