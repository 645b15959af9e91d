"""A herd-rapi application on a scratch root with a given users file, for in-process tests
(RAPI and the web manager share it): the app as herd-rapi builds it, its master replaced by
the test's stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from herd.paths import HerdPaths
from herd.rapi.app import RapiApp

M = TypeVar("M")


def rapi_app(root: Path, users: str, master: M) -> tuple[RapiApp, M]:
    """The app of ``root`` whose users file holds ``users`` (one "name password [options]"
    line each), talking to ``master`` instead of masterd."""
    paths = HerdPaths(root)
    paths.rapi_users_file.parent.mkdir(parents=True, exist_ok=True)
    paths.rapi_users_file.write_text(users)
    app = RapiApp(paths)
    app.master = master  # type: ignore[assignment]
    return app, master
