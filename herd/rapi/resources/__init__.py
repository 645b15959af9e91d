"""RAPI v2 resources, one module per area; importing this package registers them all."""

from herd.rapi.resources import cluster, groups, instances, jobs, nodes, query  # noqa: F401
