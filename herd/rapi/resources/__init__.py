"""RAPI v2 resources, one module per area; importing this package registers them all."""

from herd.rapi.resources import (  # noqa: F401
    cluster,
    groups,
    instances,
    jobs,
    networks,
    nodes,
    query,
)
