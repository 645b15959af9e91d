"""Herd's daemons: herd-noded, herd-masterd, herd-rapi.

Importing this package keeps httpx's command-line tool out of the daemons: ``import httpx``
also imports ``httpx._main`` (click, rich, pygments: about 6 MiB resident per process)
whenever those happen to be installed, and no daemon runs that tool. A ``None`` entry in
``sys.modules`` is Python's documented way to make that one import fail; httpx expects the
failure (it is how it behaves without its ``cli`` extra) and carries on.
"""

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
