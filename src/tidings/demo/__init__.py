"""Demo applications (the live like counter) shared by ``tidings demo`` and the gateway."""

from tidings.demo.likes import LikeAdded, LikeMilestone, LikesDemo, LikesState

__all__ = ["LikeAdded", "LikeMilestone", "LikesDemo", "LikesState"]
