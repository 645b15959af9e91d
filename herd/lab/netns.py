"""Network namespaces for test and demo nodes on one machine.

A node lives in its own namespace with loopback up and one bridge (the instance bridge, also
carrying the node's primary address), and a hosts file that ``ip netns exec`` mounts over
/etc/hosts inside the namespace, so node and cluster names resolve there and nowhere else.
Addresses come from documentation ranges that no interface of the machine uses, and no route
leads out of the namespace.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

NETNS_ETC = Path("/etc/netns")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class LabNode:
    netns: str
    node_name: str
    address: str
    prefix: int = 24
    bridge: str = "br0"
    hosts: dict[str, str] = field(default_factory=dict)  # extra name -> address entries

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]

    def create(self) -> None:
        if Path(f"/run/netns/{self.netns}").exists():
            raise RuntimeError(f"network namespace {self.netns} already exists")
        _ip("netns", "add", self.netns)
        try:
            _ip("-n", self.netns, "link", "set", "lo", "up")
            _ip("-n", self.netns, "link", "add", self.bridge, "type", "bridge")
            _ip("-n", self.netns, "addr", "add", f"{self.address}/{self.prefix}",
                "dev", self.bridge)
            _ip("-n", self.netns, "link", "set", self.bridge, "up")
            etc = NETNS_ETC / self.netns
            etc.mkdir(parents=True, exist_ok=True)
            short = self.node_name.split(".")[0]
            lines = ["127.0.0.1\tlocalhost", f"{self.address}\t{self.node_name}\t{short}"]
            lines += [f"{addr}\t{name}\t{name.split('.')[0]}" for name, addr in
                      self.hosts.items()]
            (etc / "hosts").write_text("\n".join(lines) + "\n")
        except Exception:
            self.destroy()
            raise

    def destroy(self) -> None:
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)
        shutil.rmtree(NETNS_ETC / self.netns, ignore_errors=True)
