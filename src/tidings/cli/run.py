"""``tidings run module:app``: serve an App's subscribers until SIGINT/SIGTERM, like uvicorn."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from typing import Annotated, Any

import typer

from tidings.app import App
from tidings.cli._common import err_console, fail, run_async

__all__ = ["load_app", "run"]


def _import_target(target: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        fail(f"{target!r}: expected module:attribute, e.g. myservice.main:app")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            fail(f"could not import module {module_name!r} (looked in {cwd} and sys.path)")
        raise  # the module exists but one of its own imports is missing: show the traceback
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            fail(f"module {module_name!r} has no attribute {attr!r}")
    return obj


async def load_app(target: str, url: str | None) -> App:
    """Import ``module:attr``; an App, or a factory (sync or async) returning one.

    With ``url``, ``$TIDINGS_BROKER_URL`` is set before the import (so ``App()`` picks it
    up) and an App built with another URL is re-pointed at it before it starts.
    """
    if url:
        os.environ["TIDINGS_BROKER_URL"] = url
    obj = _import_target(target)
    if not isinstance(obj, App) and callable(obj) and not isinstance(obj, type):
        obj = obj()
        if inspect.isawaitable(obj):
            obj = await obj
    if not isinstance(obj, App):
        fail(
            f"{target!r} is a {type(obj).__name__}, not a tidings App (or a function returning one)"
        )
    if url and obj.url != url:
        if obj.started:
            fail(f"{target!r} is already started on {obj.url}; cannot move it to {url}")
        await obj.transport.close()
        obj.rebind(url)
    return obj


def run(
    target: Annotated[
        str, typer.Argument(metavar="MODULE:APP", help="Where the App is, e.g. service:app.")
    ],
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            envvar="TIDINGS_BROKER_URL",
            help="Override the App's broker URL (default: the URL the App was built with).",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run an App's subscribers until SIGINT/SIGTERM, then drain in-flight messages.

    MODULE is imported with the current directory on sys.path; APP is an App instance or a
    function returning one. Uses uvloop when installed.
    """
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        fail(f"--log-level {log_level!r}: expected debug, info, warning or error")
    from rich.logging import RichHandler

    logging.basicConfig(
        level=level,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err_console(), show_path=False)],
    )
    log = logging.getLogger("tidings.cli")

    async def go() -> None:
        app = await load_app(target, url)
        names = ", ".join(f"{c.topic}/{c.group}" for c in app.consumers) or "no subscribers"
        log.info("tidings run %s on %s (%s); Ctrl-C or SIGTERM to stop", target, app.url, names)
        await app.run()
        log.info("stopped: in-flight messages drained, broker closed")

    run_async(go())
