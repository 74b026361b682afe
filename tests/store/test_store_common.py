"""Rules every recorder shares: names, categories, expected versions, duplicates."""

from __future__ import annotations

import pytest

import tidings.store as store_pkg
from tidings.errors import InvalidStreamName
from tidings.store import ANY, EXISTS, NO_STREAM, AppendResult, DuplicateEventId, NewEvent
from tidings.store._common import (
    MAX_STREAM_NAME,
    category_of,
    expected_ok,
    resolve_duplicates,
    validate_append,
    validate_stream,
)


def test_store_exports_are_stable() -> None:
    assert sorted(store_pkg.__all__) == sorted(
        [
            "ANY",
            "EXISTS",
            "NO_STREAM",
            "AppendResult",
            "DuplicateEventId",
            "EventStore",
            "ExpectedVersion",
            "NewEvent",
            "RecordedEvent",
            "Recorder",
            "Snapshot",
            "StreamInfo",
        ]
    )


def test_store_category_is_prefix_before_first_dash() -> None:
    assert category_of("account-42") == "account"
    assert category_of("account-42-x") == "account"
    assert category_of("account") is None
    assert category_of("-x") == ""


def test_store_stream_names_accept_hostile_reject_broken() -> None:
    for name in ("a'b\"c", "é漢字🙂", "x" * MAX_STREAM_NAME, " ", "a;--"):
        assert validate_stream(name) == name
    for bad in ("", "a\x00b", "x" * (MAX_STREAM_NAME + 1), "\ud800", None, 42):
        with pytest.raises(InvalidStreamName):
            validate_stream(bad)


def test_store_expected_version_rules() -> None:
    assert expected_ok(ANY, None) and expected_ok(ANY, 3)
    assert expected_ok(NO_STREAM, None) and not expected_ok(NO_STREAM, 0)
    assert expected_ok(EXISTS, 0) and not expected_ok(EXISTS, None)
    assert expected_ok(2, 2) and not expected_ok(2, 3) and not expected_ok(0, None)


def test_store_append_arguments_checked() -> None:
    e = NewEvent(id="a", type="t", data=b"{}")
    with pytest.raises(ValueError):
        validate_append("s", [], ANY)
    for bad in (-1, True, "1", None):
        with pytest.raises(ValueError):
            validate_append("s", [e], bad)  # type: ignore[arg-type]
    with pytest.raises(DuplicateEventId):
        validate_append("s", [e, e], ANY)


def test_store_resolve_duplicates_idempotent_only_at_same_place() -> None:
    events = [NewEvent(id=i, type="t", data=b"{}") for i in ("a", "b")]
    found = {"a": ("s", 3, 10), "b": ("s", 4, 11)}
    assert resolve_duplicates("s", events, ANY, found) == AppendResult(4, 11)
    assert resolve_duplicates("s", events, 2, found) == AppendResult(4, 11)
    assert resolve_duplicates("s", events, EXISTS, found) == AppendResult(4, 11)
    for expected in (NO_STREAM, 3, 1):
        with pytest.raises(DuplicateEventId):
            resolve_duplicates("s", events, expected, found)
    with pytest.raises(DuplicateEventId):
        resolve_duplicates("other", events, ANY, found)
    with pytest.raises(DuplicateEventId):
        resolve_duplicates("s", events[::-1], ANY, found)
    with pytest.raises(DuplicateEventId):
        resolve_duplicates("s", events, ANY, {"a": ("s", 3, 10)})
