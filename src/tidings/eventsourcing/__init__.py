"""Event sourcing: aggregates rebuilt from their events, and the repository that stores them."""

from tidings.eventsourcing.aggregate import Aggregate, applies
from tidings.eventsourcing.repository import HistoryEntry, Repository

__all__ = ["Aggregate", "HistoryEntry", "Repository", "applies"]
