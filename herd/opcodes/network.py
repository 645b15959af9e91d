"""Network opcodes (Ganeti's OP_NETWORK_*), with Ganeti's field names so that RAPI bodies
and job listings read as Ganeti's."""

from __future__ import annotations

import dataclasses

from herd.opcodes.base import OpCode


@dataclasses.dataclass(kw_only=True)
class OpNetworkAdd(OpCode):
    OP_ID = "OP_NETWORK_ADD"
    SUMMARY_FIELD = "network_name"
    network_name: str
    network: str
    gateway: str | None = None
    network6: str | None = None
    gateway6: str | None = None
    mac_prefix: str | None = None
    add_reserved_ips: list[str] | None = None
    conflicts_check: bool = True
    tags: list[str] | None = None


@dataclasses.dataclass(kw_only=True)
class OpNetworkRemove(OpCode):
    OP_ID = "OP_NETWORK_REMOVE"
    SUMMARY_FIELD = "network_name"
    network_name: str
    force: bool = False


@dataclasses.dataclass(kw_only=True)
class OpNetworkSetParams(OpCode):
    OP_ID = "OP_NETWORK_SET_PARAMS"
    SUMMARY_FIELD = "network_name"
    network_name: str
    gateway: str | None = None
    network6: str | None = None
    gateway6: str | None = None
    mac_prefix: str | None = None
    add_reserved_ips: list[str] | None = None
    remove_reserved_ips: list[str] | None = None


@dataclasses.dataclass(kw_only=True)
class OpNetworkRename(OpCode):
    OP_ID = "OP_NETWORK_RENAME"
    SUMMARY_FIELD = "network_name"
    network_name: str
    new_name: str


@dataclasses.dataclass(kw_only=True)
class OpNetworkConnect(OpCode):
    OP_ID = "OP_NETWORK_CONNECT"
    SUMMARY_FIELD = "network_name"
    group_name: str
    network_name: str
    network_mode: str
    network_link: str
    network_vlan: str = ""
    conflicts_check: bool = True


@dataclasses.dataclass(kw_only=True)
class OpNetworkDisconnect(OpCode):
    OP_ID = "OP_NETWORK_DISCONNECT"
    SUMMARY_FIELD = "network_name"
    group_name: str
    network_name: str
