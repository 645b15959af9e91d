"""Herd's daemons: herd-noded, herd-masterd, herd-rapi.

Importing this package keeps two command-line tools out of the daemons, each several MiB that
every daemon process would keep resident for nothing:

- httpx's: ``import httpx`` also imports ``httpx._main`` (click, rich, pygments: about 6 MiB
  resident per process) whenever those happen to be installed, and no daemon runs that tool. A
  ``None`` entry in ``sys.modules`` is Python's documented way to make that one import fail;
  httpx expects the failure (it is how it behaves without its ``cli`` extra) and carries on.
- uvicorn's: its package ``__init__`` imports ``uvicorn.main`` (click, and the multiprocessing
  supervisors: about 2 MiB in each of herd-rapi and noded, which serve from one process) to
  offer ``uvicorn.run``. The daemons that serve HTTPS take uvicorn from :func:`uvicorn_package`,
  which puts the package in ``sys.modules`` without running that ``__init__``:
  ``uvicorn.Config`` and ``uvicorn.Server`` come from their own modules when first used, and
  any other name (``uvicorn.run``, ``__version__``) runs the real ``__init__`` first, so every
  use of uvicorn in that process still works.
"""

import sys
from collections.abc import Callable
from types import ModuleType

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def uvicorn_package() -> ModuleType:
    """The ``uvicorn`` package, without its command-line tool unless something asks for it
    (see the module); call it before anything imports uvicorn."""
    if "uvicorn" in sys.modules:
        return sys.modules["uvicorn"]
    import importlib.machinery
    import importlib.util

    spec = importlib.machinery.PathFinder.find_spec("uvicorn")
    if spec is None or spec.loader is None:
        import uvicorn  # as it comes (the error, if it is missing)

        return uvicorn
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def __getattr__(name: str) -> object:  # PEP 562: names the module does not have yet
        if name == "Config":
            from uvicorn.config import Config

            return Config
        if name == "Server":
            from uvicorn.server import Server

            return Server
        if name.startswith("__") and name != "__version__":
            raise AttributeError(name)
        del package.__getattr__  # the real __init__ now defines every public name
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules["uvicorn"] = package
    return package


def lazy_websocket_protocol(kind: str) -> Callable[..., object]:
    """uvicorn's websocket protocol ``kind`` ("websockets", "auto": uvicorn's names), for
    ``uvicorn.Config(ws=...)``, imported at the first websocket upgrade instead of at start.

    Given a name, uvicorn imports the protocol when it loads its config, and the
    ``websockets`` library with it: about 1.5 MiB in each of noded and herd-rapi, which
    upgrade only for a console (a viewer or ``gnt-instance console``). uvicorn calls what it
    is given to make the protocol of an upgraded connection (and tests it against None only),
    so a function that imports the class once, then makes it, serves as well."""
    protocol: list[Callable[..., object]] = []

    def make(**kwargs: object) -> object:
        if not protocol:
            from uvicorn.config import WS_PROTOCOLS
            from uvicorn.importer import import_from_string

            protocol.append(import_from_string(WS_PROTOCOLS[kind]))
        return protocol[0](**kwargs)

    return make
