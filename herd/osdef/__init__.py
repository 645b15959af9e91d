"""OS definitions: discovery (definition), script environment (environment), runs (runner).

The node daemon uses only the names re-exported here.
"""

from herd.osdef.definition import (
    SUPPORTED_API_VERSIONS,
    OsDefinition,
    check_osparams,
    discover,
    load,
    lookup,
    split_name,
)
from herd.osdef.environment import build_env
from herd.osdef.runner import run_script

__all__ = [
    "SUPPORTED_API_VERSIONS",
    "OsDefinition",
    "build_env",
    "check_osparams",
    "discover",
    "load",
    "lookup",
    "run_script",
    "split_name",
]
