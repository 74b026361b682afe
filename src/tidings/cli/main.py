"""The ``tidings`` command: the root Typer app and its ``main()`` entry point."""

from __future__ import annotations

from typing import Annotated

import typer

from tidings.cli import broker, run
from tidings.cli.dlq import dlq_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="tidings",
    help="tidings: events in, state out. Publish, follow and administer topics, run apps, "
    "browse the event store, watch the demo.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from tidings import __version__

        typer.echo(f"tidings {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """tidings: events in, state out."""


app.command("run")(run.run)
app.command("publish")(broker.publish)
app.command("tail")(broker.tail)
app.command("topics")(broker.topics)
app.add_typer(dlq_app, name="dlq")


def _add_demo() -> None:
    from tidings.cli.demo import demo

    app.command("demo")(demo)


def _add_store() -> None:
    """Register ``tidings store`` if its module imports; otherwise a stub that says why."""
    try:
        from tidings.cli.store import store_app
    except Exception as exc:  # another team's module: never let it break the whole CLI
        reason = f"{type(exc).__name__}: {exc}"

        @app.command(
            "store",
            help="Browse the event store (unavailable in this install).",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        )
        def store_unavailable() -> None:
            from tidings.cli._common import fail

            fail(f"`tidings store` is unavailable: {reason}")

        return
    app.add_typer(store_app, name="store")


_add_demo()
_add_store()


def main() -> None:
    """Console-script entry point (``tidings = "tidings.cli:main"``)."""
    app(prog_name="tidings")
