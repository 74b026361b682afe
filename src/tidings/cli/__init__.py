"""The ``tidings`` command line (Typer + Rich); ``main`` is the console-script entry point."""

from __future__ import annotations

from tidings.cli.main import main

__all__ = ["main"]
