"""The public API: ``__all__`` lists exactly what ``tidings`` exports, and import is light."""

from __future__ import annotations

import subprocess
import sys

import tidings


def test_exports_all_names_exist_and_are_sorted() -> None:
    missing = [name for name in tidings.__all__ if not hasattr(tidings, name)]
    assert missing == []
    assert list(tidings.__all__) == sorted(tidings.__all__)


def test_exports_public_names_have_docstrings() -> None:
    undocumented = [
        name
        for name in tidings.__all__
        if isinstance(getattr(tidings, name), type) and not getattr(tidings, name).__doc__
    ]
    assert undocumented == []


def test_exports_import_tidings_loads_no_backend_driver() -> None:
    code = (
        "import sys, tidings; "
        "drivers = {'asyncpg', 'aio_pika', 'aiokafka', 'nats', 'redis', 'starlette', 'uvicorn'}; "
        "print(sorted(drivers & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
