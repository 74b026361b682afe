"""Handler middleware: ``Callable[[Handler], Handler]``, one module each."""

from tidings.app.middleware.dedupe import Deduplicate, MemoryDedupeStore
from tidings.app.middleware.tracing import Tracing

__all__ = ["Deduplicate", "MemoryDedupeStore", "Tracing"]
