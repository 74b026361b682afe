"""The public API: ``__all__`` lists exactly what ``tidings`` exports, and import is light."""

from __future__ import annotations

import subprocess
import sys

import tidings


def test_exports_all_names_exist_once() -> None:
    missing = [name for name in tidings.__all__ if not hasattr(tidings, name)]
    assert missing == []
    assert len(set(tidings.__all__)) == len(tidings.__all__)


def test_exports_every_public_class_and_function_is_listed() -> None:
    public = {
        name
        for name, value in vars(tidings).items()
        if not name.startswith("_")
        and (isinstance(value, type) or callable(value))
        and getattr(value, "__module__", "").startswith("tidings")
    }
    assert public - set(tidings.__all__) == set()


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
