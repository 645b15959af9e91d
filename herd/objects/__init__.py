"""Configuration data model: plain dataclasses with no dependency on the rest of Herd."""

from herd.objects.base import ConfigObject, new_uuid
from herd.objects.cluster import Cluster, ConfigData
from herd.objects.instance import Disk, Instance, Nic
from herd.objects.network import Network
from herd.objects.node import Node, NodeGroup

__all__ = ["Cluster", "ConfigData", "ConfigObject", "Disk", "Instance", "Network", "Nic",
           "Node", "NodeGroup", "new_uuid"]
