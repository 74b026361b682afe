"""The public names of tidings.eventsourcing."""

import tidings.eventsourcing


def test_eventsourcing_exports_are_stable() -> None:
    assert sorted(tidings.eventsourcing.__all__) == [
        "Aggregate",
        "HistoryEntry",
        "Repository",
        "applies",
    ]
    for name in tidings.eventsourcing.__all__:
        assert getattr(tidings.eventsourcing, name) is not None
