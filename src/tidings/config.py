"""Backend URLs: parsing, the scheme → module table, lazy imports with install hints."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from types import ModuleType
from urllib.parse import urlsplit

from tidings.errors import MissingExtra, UnsupportedURL

__all__ = [
    "DEFAULT_URL",
    "load_backend",
    "require",
    "resolve_url",
    "scheme_of",
]

DEFAULT_URL = "sqlite:///./tidings.db"


def scheme_of(url: str) -> str:
    """The URL's scheme, lower-cased (``postgres`` and ``postgresql+asyncpg`` normalised)."""
    if not isinstance(url, str) or "://" not in url:
        raise UnsupportedURL(
            f"{url!r} is not a backend URL; expected e.g. 'memory://' or 'sqlite:///./tidings.db'"
        )
    scheme = urlsplit(url).scheme.lower().split("+")[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return scheme


def resolve_url(url: str | None, env_var: str) -> str:
    """``url`` if given, else the environment variable, else the embedded SQLite default."""
    return url or os.environ.get(env_var) or DEFAULT_URL


def load_backend(url: str, table: Mapping[str, str], what: str) -> ModuleType:
    """Import the module serving ``url``'s scheme from ``table`` (scheme → module path)."""
    scheme = scheme_of(url)
    module = table.get(scheme)
    if module is None:
        supported = ", ".join(f"{s}://" for s in sorted(table))
        raise UnsupportedURL(
            f"unknown {what} URL scheme {scheme!r} in {url!r}; supported: {supported}"
        )
    return importlib.import_module(module)


def require(module: str, extra: str) -> ModuleType:
    """Import an optional driver or raise :class:`MissingExtra` naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(extra, module.split(".")[0]) from exc
