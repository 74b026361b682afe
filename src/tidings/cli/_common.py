"""What every ``tidings`` command shares: the ``--url`` option, the event loop, error output.

Errors are translated here, once: a :class:`~tidings.errors.TidingsError` (bad URL scheme,
missing extra, unreachable broker, ...) or an ``OSError`` prints one red line on stderr and
exits with code 2, never a traceback. Ctrl-C exits with 130, quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tidings.config import DEFAULT_URL
from tidings.errors import TidingsError

__all__ = [
    "EXIT_USAGE",
    "BrokerUrl",
    "err_console",
    "fail",
    "guard",
    "out_console",
    "run_async",
]

T = TypeVar("T")

EXIT_USAGE = 2
"""Exit code for bad input and configuration or broker errors (click's usage-error code)."""

BrokerUrl = Annotated[
    str,
    typer.Option(
        "--url",
        envvar="TIDINGS_BROKER_URL",
        help="Broker URL: sqlite:///path.db, memory://, amqp://..., kafka://..., nats://..., "
        "redis://..., postgresql://...",
        show_default=True,
    ),
]
"""``--url`` for every broker command (``$TIDINGS_BROKER_URL``, default ``DEFAULT_URL``)."""

URL_DEFAULT = DEFAULT_URL


def out_console() -> Console:
    """Console on stdout (created per call so CliRunner's captured streams are honoured)."""
    return Console(highlight=False, soft_wrap=True)


def err_console() -> Console:
    """Console on stderr."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with ``code``."""
    err_console().print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Turn tidings and OS errors into one red line and exit code 2; Ctrl-C into 130."""
    try:
        yield
    except TidingsError as exc:
        fail(str(exc) or type(exc).__name__)
    except OSError as exc:
        fail(f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        err_console().print("[dim]interrupted[/]")
        raise typer.Exit(130) from None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _cancel_on_sigterm(coro: Coroutine[Any, Any, T]) -> T:
    """SIGTERM cancels the command like Ctrl-C does, so its ``finally`` blocks clean up.

    Commands that drain gracefully (``run``, ``demo``) install their own handlers.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed = False
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
            installed = True
    try:
        return await coro
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh loop (uvloop when installed), errors guarded."""
    with guard(), asyncio.Runner(loop_factory=_loop_factory()) as runner:
        try:
            return runner.run(_cancel_on_sigterm(coro))
        except asyncio.CancelledError:
            err_console().print("[dim]terminated[/]")
            raise typer.Exit(143) from None
