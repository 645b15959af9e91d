"""A multi-node cluster lab on one machine: every node a network namespace with its own HERD_ROOT.

Topology (DESIGN.md section 9). The lab has one *switch* namespace holding three bridges, one per
network, and each node namespace is wired to each bridge by a veth pair:

    node K (herdlab-LAB-nK)                        switch (herdlab-LAB-sw)
      eth0  198.51.100.K/24  <--veth-->  nKp  in  sw-primary     (node and master IPs)
      eth1  203.0.113.K/24   <--veth-->  nKs  in  sw-secondary   (replication traffic)
      br0 <- br0-uplink      <--veth-->  nKi  in  sw-instance    (guests' L2 segment)

Nothing lives in the host namespace: a namespace of our own holds the switches so that the lab can
neither leak addresses onto the machine's network nor be disturbed by it, and so that the switch
ports are the one place where a node can be unplugged (crash) or two nodes cut apart (partition,
nftables bridge-family rules on those ports).

The lab's state (nodes, crashed nodes, partitions) is a JSON file under /run/herd-lab so that
separate ``herd-lab`` invocations and the Python API agree; every change takes a per-lab lock.
Teardown never trusts that state alone: it also finds the lab's namespaces by name, so a lab that
failed half-way through ``up`` is removed as well.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herd import upgrade
from herd.fileutil import atomic_write_json
from herd.paths import HerdPaths

STATE_DIR = Path("/run/herd-lab")
ROOT_BASE = Path("/var/lib/herd-lab")
NETNS_RUN = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")

DOMAIN = "example.com"
CLUSTER_NAME = f"cluster.{DOMAIN}"
CLUSTER_IP = "198.51.100.254"
PRIMARY_NET = "198.51.100"
SECONDARY_NET = "203.0.113"
PREFIX = 24
INSTANCE_BRIDGE = "br0"
UPLINK = "br0-uplink"
MAX_NODES = 250  # .254 is the cluster (master) IP; keep a few addresses free besides

#: Switch bridge per network, and the suffix of a node's port on it (``n<K><suffix>``).
SWITCHES = {"p": "sw-primary", "s": "sw-secondary", "i": "sw-instance"}
NFT_TABLE = "herdlab"
#: A silent peer must be noticed in seconds, not the default ~15 minutes of retransmissions.
NODE_SYSCTLS = {"net.ipv4.tcp_retries2": "5"}

_LAB_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,19}$")  # short: unix socket paths live under roots
_NODE_NAME = re.compile(rf"^node(\d+)(\.{re.escape(DOMAIN)})?$")


class LabError(RuntimeError):
    """The lab cannot do what was asked (no such lab or node, already exists, a command failed)."""


class LabCommandError(LabError):
    """A command run inside a node failed; the message carries its output."""

    def __init__(self, argv: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.argv = argv
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        super().__init__(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                         f"{proc.stdout}\n{proc.stderr}".rstrip())


@dataclass(frozen=True)
class LabNodeInfo:
    """Where one lab node lives and how it is addressed."""

    index: int
    name: str          # short name, "node2"
    fqdn: str          # "node2.example.com"
    netns: str
    root: Path
    primary_ip: str
    secondary_ip: str

    @property
    def paths(self) -> HerdPaths:
        return HerdPaths(self.root)

    @property
    def ports(self) -> list[str]:
        """This node's veth ends in the switch namespace (one per network)."""
        return [f"n{self.index}{suffix}" for suffix in SWITCHES]


def _cmd(argv: list[str], input: str | None = None, timeout: float = 60) -> str:
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                          check=False)
    if proc.returncode != 0:
        raise LabCommandError(argv, proc)
    return proc.stdout


def _ip_batch(netns: str, lines: list[str]) -> None:
    """Run many ``ip`` commands in one namespace with one process (``up`` stays fast)."""
    _cmd(["ip", "-n", netns, "-batch", "-"], input="\n".join(lines) + "\n")


def netns_pids(netns: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                          check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


def kill_netns(netns: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in ``netns`` at once, again for any forked meanwhile, until none."""
    deadline = time.monotonic() + timeout
    while pids := netns_pids(netns):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise LabError(f"processes {pids} in {netns} survive SIGKILL")
        time.sleep(0.02)


#: The file under each node's root that is its PV when the lab has a VG.
PV_IMAGE = "lvm-pv.img"
DEFAULT_VG_SIZE_MIB = 1024
MIN_VG_SIZE_MIB, MAX_VG_SIZE_MIB = 64, 1024 * 1024


def _loops_backed_by(path: str) -> list[str]:
    """Loop devices whose backing file is ``path`` (a file or a block device)."""
    proc = subprocess.run(["losetup", "-n", "-O", "NAME", "-j", path], capture_output=True,
                          text=True, check=False)
    return proc.stdout.split() if proc.returncode == 0 else []


def _deactivate_dm(device: str) -> None:
    """Remove device-mapper devices over ``device`` (LVs activated where the kernel has
    device-mapper): they hold the PV's loop device open, so it could not be detached."""
    name = os.path.basename(device)
    holders = Path(f"/sys/class/block/{name}/holders")
    if not holders.is_dir():
        return
    for holder in holders.iterdir():
        dm_name = (holder / "dm" / "name")
        if dm_name.exists():
            subprocess.run(["dmsetup", "remove", dm_name.read_text().strip()],
                           capture_output=True, check=False)


class Lab:
    """One named lab. Constructing it touches nothing; ``up``/``load`` give it nodes."""

    def __init__(self, name: str = "lab") -> None:
        if not _LAB_NAME.match(name):
            raise LabError(f"invalid lab name {name!r}: 1-20 of [a-z0-9-], not starting with -")
        self.name = name
        self.bindir = Path(sys.executable).parent  # the venv's bin (not resolved: keep the venv)
        self._state: dict[str, Any] = {}

    # -- naming ------------------------------------------------------------------------------
    @property
    def switch_netns(self) -> str:
        return f"herdlab-{self.name}-sw"

    @property
    def root(self) -> Path:
        return ROOT_BASE / self.name

    @property
    def state_file(self) -> Path:
        return STATE_DIR / f"{self.name}.json"

    def _node_info(self, index: int) -> LabNodeInfo:
        return LabNodeInfo(index=index, name=f"node{index}", fqdn=f"node{index}.{DOMAIN}",
                           netns=f"herdlab-{self.name}-n{index}",
                           root=self.root / f"node{index}",
                           primary_ip=f"{PRIMARY_NET}.{index}",
                           secondary_ip=f"{SECONDARY_NET}.{index}")

    # -- state -------------------------------------------------------------------------------
    @classmethod
    def load(cls, name: str = "lab") -> Lab:
        """The lab ``name`` as built by an earlier ``up`` (in this or another process)."""
        lab = cls(name)
        lab._reload()
        return lab

    def exists(self) -> bool:
        return self.state_file.exists()

    def _reload(self) -> dict[str, Any]:
        try:
            self._state = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            raise LabError(f"lab {self.name!r} is not up") from None
        return self._state

    def _save(self) -> None:
        atomic_write_json(self.state_file, self._state, mode=0o644)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise changes to this lab across processes (flock on a per-lab file)."""
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        with open(STATE_DIR / f"{self.name}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    @property
    def nodes(self) -> list[LabNodeInfo]:
        if not self._state:
            self._reload()
        return [self._node_info(i) for i in range(1, self._state["nodes"] + 1)]

    def node(self, name: str | int) -> LabNodeInfo:
        """A node by ``node2``, ``node2.example.com`` or 2."""
        if isinstance(name, int):
            index = name
        else:
            match = _NODE_NAME.match(name)
            if not match:
                raise LabError(f"no node {name!r} (nodes are node1..nodeN[.{DOMAIN}])")
            index = int(match.group(1))
        nodes = self.nodes
        if not 1 <= index <= len(nodes):
            raise LabError(f"no node {name!r} in lab {self.name!r} ({len(nodes)} nodes)")
        return nodes[index - 1]

    def _lab_netns(self) -> list[str]:
        """Every namespace of this lab that exists now, found by name (not by state)."""
        pattern = re.compile(rf"^herdlab-{re.escape(self.name)}-(sw|n\d+)$")
        names = set()
        for base in (NETNS_RUN, NETNS_ETC):
            if base.is_dir():
                names.update(p.name for p in base.iterdir() if pattern.match(p.name))
        return sorted(names)

    # -- building ----------------------------------------------------------------------------
    def up(self, nodes: int, start_daemons: bool = True, vg: str | None = None,
           vg_size_mib: int = DEFAULT_VG_SIZE_MIB) -> None:
        """Build the lab with ``nodes`` nodes and start each node's noded; all or nothing.

        ``vg``: give every node its own PV (a sparse file on a loop device) holding a volume
        group of that name, as the nodes of a real cluster each have theirs (see
        :meth:`_build_pv`)."""
        if not 1 <= nodes <= MAX_NODES:
            raise LabError(f"--nodes must be 1..{MAX_NODES}")
        if vg is not None:
            from herd.errors import HerdError
            from herd.storage.lvm import validate_vg_name

            try:
                validate_vg_name(vg)
            except HerdError as exc:
                raise LabError(exc.message) from None
            if not MIN_VG_SIZE_MIB <= vg_size_mib <= MAX_VG_SIZE_MIB:
                raise LabError(f"invalid VG size {vg_size_mib} MiB: allowed are "
                               f"{MIN_VG_SIZE_MIB}..{MAX_VG_SIZE_MIB}")
        with self._locked():
            if self.exists() or self._lab_netns():
                raise LabError(f"lab {self.name!r} exists; run 'herd-lab --name {self.name} down'")
            self._state = {"name": self.name, "nodes": nodes, "crashed": [], "partitions": [],
                           "bindir": str(self.bindir), "switch_netns": self.switch_netns,
                           "pvs": {}}
            self._save()  # first, so that a half-built lab is known to 'down'
            try:
                self._build_switch()
                for info in self.nodes:
                    self._build_node(info)
                    if vg is not None:
                        self._build_pv(info, vg, vg_size_mib)
                if start_daemons:
                    self._start_daemons(self.nodes, "start", "noded")
            except BaseException:
                self._teardown()
                raise

    def _build_switch(self) -> None:
        _cmd(["ip", "netns", "add", self.switch_netns])
        lines = ["link set lo up"]
        for bridge in SWITCHES.values():
            lines += [f"link add {bridge} type bridge", f"link set {bridge} up"]
        _ip_batch(self.switch_netns, lines)
        # the switch has no addresses; no IPv6 link-local chatter from its bridges either
        self._sysctl(self.switch_netns, {"net.ipv6.conf.all.disable_ipv6": "1",
                                         "net.ipv6.conf.default.disable_ipv6": "1"})

    def _build_node(self, info: LabNodeInfo) -> None:
        _cmd(["ip", "netns", "add", info.netns])
        etc = NETNS_ETC / info.netns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(self._hosts_file())
        info.paths.ensure()
        node_side = {"p": "eth0", "s": "eth1", "i": UPLINK}
        sw_lines = []
        for suffix, bridge in SWITCHES.items():
            port = f"n{info.index}{suffix}"
            sw_lines += [f"link add {port} type veth peer name {node_side[suffix]} "
                         f"netns {info.netns}",
                         f"link set {port} master {bridge}", f"link set {port} up"]
        _ip_batch(self.switch_netns, sw_lines)
        _ip_batch(info.netns, [
            "link set lo up",
            f"link add {INSTANCE_BRIDGE} type bridge",
            f"link set {UPLINK} master {INSTANCE_BRIDGE}",
            f"link set {UPLINK} up", f"link set {INSTANCE_BRIDGE} up",
            *self._boot_addresses(info),
            "link set eth0 up", "link set eth1 up",
        ])
        self._sysctl(info.netns, NODE_SYSCTLS)

    def _build_pv(self, info: LabNodeInfo, vg: str, size_mib: int) -> None:
        """The node's PV: a sparse file under its root on a loop device, listed in the node's
        ``lvm-devices`` file so that its LVM sees only this device (``--devices``; every node
        of the lab has a VG called ``vg`` and they share one kernel), and the VG on it."""
        from herd.storage import node_vg
        from herd.storage.lvm import LvmNode

        image = info.root / PV_IMAGE
        with open(image, "wb") as handle:
            handle.truncate(size_mib * 1024 * 1024)
        device = _cmd(["losetup", "--find", "--show", str(image)]).strip()
        self._state.setdefault("pvs", {})[info.name] = {"device": device, "image": str(image),
                                                        "vg": vg}
        self._save()  # before anything can fail: 'down' detaches it
        node_vg.write_devices(info.paths, [device])
        try:
            LvmNode(vg, [device], node_vg.system_dir(info.paths)).create_vg()
        except Exception as exc:
            raise LabError(f"{info.name}: cannot create volume group {vg} on {device}: "
                           f"{exc}") from None

    @staticmethod
    def _boot_addresses(info: LabNodeInfo) -> list[str]:
        """The node's addresses as after boot: anything added at run time (master IP) is gone."""
        return ["addr flush dev eth0", f"addr add {info.primary_ip}/{PREFIX} dev eth0",
                "addr flush dev eth1", f"addr add {info.secondary_ip}/{PREFIX} dev eth1"]

    def _hosts_file(self) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{n.primary_ip}\t{n.fqdn}\t{n.name}" for n in self.nodes]
        lines.append(f"{CLUSTER_IP}\t{CLUSTER_NAME}\t{CLUSTER_NAME.split('.')[0]}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _sysctl(netns: str, values: dict[str, str]) -> None:
        """Per-namespace sysctls: /proc/sys/net shows the namespace of the process reading it."""
        _cmd(["ip", "netns", "exec", netns, "sysctl", "-q", "-w",
              *(f"{k}={v}" for k, v in values.items())])

    def _start_daemons(self, nodes: list[LabNodeInfo], *util_args: str) -> None:
        """Run ``herd-daemon-util ARGS`` in each node, all nodes at once (startup is slow)."""
        procs = [(info, subprocess.Popen(
            self.argv(info, str(self._bindir(info) / "herd-daemon-util"), *util_args),
            env=self.env(info), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for info in nodes]
        errors = []
        for info, proc in procs:
            out, err = proc.communicate()
            if proc.returncode != 0:
                errors.append(f"{info.name}: {(err or out).strip()}")
        if errors:
            raise LabError("herd-daemon-util " + " ".join(util_args) + " failed:\n"
                           + "\n".join(errors))

    def start_daemons(self, nodes: list[str] | None = None) -> None:
        """Start noded in the nodes (all by default) of a lab built with start_daemons=False,
        e.g. after installing code versions into them (herd.lab.versions)."""
        infos = [self.node(n) for n in nodes] if nodes else self.nodes
        self._start_daemons(infos, "start", "noded")

    # -- running things in nodes -------------------------------------------------------------
    def _bindir(self, info: LabNodeInfo) -> Path:
        """Where the node's commands are: the version it runs (herd.upgrade's ``current``)
        when versions were installed in it, else the venv of this process."""
        current = upgrade.current_link(info.root) / "bin"
        return current if current.is_dir() else self.bindir

    def env(self, node: str | int | LabNodeInfo) -> dict[str, str]:
        info = node if isinstance(node, LabNodeInfo) else self.node(node)
        bindir = self._bindir(info)
        path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/bin")
        if bindir != self.bindir:  # the venv's commands after the version's
            path = f"{self.bindir}:{path}"
        return dict(os.environ, HERD_ROOT=str(info.root), PATH=f"{bindir}:{path}")

    def argv(self, node: str | int | LabNodeInfo, *args: str) -> list[str]:
        """The command line running ``args`` in the node; refused while it is powered off."""
        info = node if isinstance(node, LabNodeInfo) else self.node(node)
        if info.name in self._reload()["crashed"]:
            raise LabError(f"{info.name} is crashed (powered off): 'herd-lab start {info.name}'")
        return ["ip", "netns", "exec", info.netns, *args]

    def run(self, node: str | int, *argv: str, check: bool = True, timeout: float = 300,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as ``node`` (its namespace, HERD_ROOT, the venv first on PATH)."""
        full = self.argv(node, *argv)
        proc = subprocess.run(full, env=self.env(node), capture_output=True, text=True,
                              timeout=timeout, input=input, check=False)
        if check and proc.returncode != 0:
            raise LabCommandError(list(argv), proc)
        return proc

    def popen(self, node: str | int, *argv: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` as ``node`` with pipes; it dies with the node (crash/down)."""
        return subprocess.Popen(self.argv(node, *argv), env=self.env(node),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    # -- failures ----------------------------------------------------------------------------
    def crash(self, node: str | int) -> None:
        """Power cut: unplug the node's links, then SIGKILL everything in it at once.

        Unplugging first means no FIN/RST of the dying processes reaches a peer, as with a
        real power cut; the runtime addresses (master IP) are dropped as a reboot would.
        """
        with self._locked():
            self._reload()
            info = self.node(node)
            _ip_batch(self.switch_netns, [f"link set {port} down" for port in info.ports])
            kill_netns(info.netns)
            _ip_batch(info.netns, self._boot_addresses(info))
            if info.name not in self._state["crashed"]:
                self._state["crashed"].append(info.name)
            self._save()

    def start(self, node: str | int, start_daemons: bool = True) -> None:
        """Power on: plug the links back, then ``herd-daemon-util start-all`` in the node."""
        with self._locked():
            self._reload()
            info = self.node(node)
            _ip_batch(self.switch_netns, [f"link set {port} up" for port in info.ports])
            self._state["crashed"] = [n for n in self._state["crashed"] if n != info.name]
            self._save()
            if start_daemons:
                self._start_daemons([info], "start-all")

    def partition(self, a: str | int, b: str | int) -> None:
        """Cut all traffic between nodes ``a`` and ``b`` (every network), both directions."""
        with self._locked():
            self._reload()
            pair = sorted([self.node(a).name, self.node(b).name])
            if pair[0] == pair[1]:
                raise LabError("a node cannot be partitioned from itself")
            if pair not in self._state["partitions"]:
                self._state["partitions"].append(pair)
            self._apply_partitions()
            self._save()

    def heal(self) -> None:
        """Remove every partition."""
        with self._locked():
            self._reload()
            self._state["partitions"] = []
            self._apply_partitions()
            self._save()

    def _apply_partitions(self) -> None:
        """Replace the switch's ruleset in one nft transaction: drop frames A<->B per pair.

        The bridge-family forward hook sees every frame a switch bridge forwards, flooded ones
        (ARP) once per output port, so matching input and output ports cuts exactly one pair.
        """
        rules = []
        for a, b in self._state["partitions"]:
            ports_a, ports_b = (", ".join(f'"{p}"' for p in self.node(n).ports) for n in (a, b))
            rules.append(f"iifname {{ {ports_a} }} oifname {{ {ports_b} }} drop")
            rules.append(f"iifname {{ {ports_b} }} oifname {{ {ports_a} }} drop")
        table = f"bridge {NFT_TABLE}"
        chain = "{ type filter hook forward priority 0; policy accept; }"
        script = "\n".join([f"add table {table}", f"add chain {table} forward {chain}",
                             f"flush table {table}",  # 'add' keeps what exists: empty it
                             *(f"add rule {table} forward {rule}" for rule in rules)]) + "\n"
        if shutil.which("nft") is None:
            if not rules:
                return  # nothing to cut: a machine without nft still runs the rest of the lab
            raise LabError("nft not found: install the Debian package nftables")
        _cmd(["ip", "netns", "exec", self.switch_netns, "nft", "-f", "-"], input=script)

    # -- teardown ----------------------------------------------------------------------------
    def down(self) -> None:
        """Remove the lab: its processes, namespaces, /etc/netns entries, roots. Idempotent."""
        with self._locked():
            self._teardown()
        (STATE_DIR / f"{self.name}.lock").unlink(missing_ok=True)

    def _teardown(self) -> None:
        with contextlib.suppress(LabError):
            self._reload()
        namespaces = set(self._lab_netns())
        if self._state:
            namespaces.add(self.switch_netns)
            namespaces.update(n.netns for n in self.nodes)
        for netns in sorted(namespaces):  # every process first: none may hold a root open
            if (NETNS_RUN / netns).exists():
                kill_netns(netns)
        for netns in sorted(namespaces):
            if (NETNS_RUN / netns).exists():
                _cmd(["ip", "netns", "del", netns])
            shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)
        self._detach_pvs()
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            ROOT_BASE.rmdir()  # only if no other lab is left
        self.state_file.unlink(missing_ok=True)
        self._state = {}

    def _detach_pvs(self) -> None:
        """Detach the nodes' PV loop devices and every loop device over them (LVs activated in
        loop mode), found by their backing files under the lab's root too: a lab that failed
        half-way may not have saved them. The devices go before the files are removed."""
        images = {Path(p["image"]) for p in self._state.get("pvs", {}).values()}
        if self.root.is_dir():
            images.update(self.root.glob(f"node*/{PV_IMAGE}"))
        for image in sorted(images):
            for device in _loops_backed_by(str(image)):
                _deactivate_dm(device)
                for over in _loops_backed_by(device):
                    subprocess.run(["losetup", "-d", over], capture_output=True, check=False)
                subprocess.run(["losetup", "-d", device], capture_output=True, check=False)

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The lab as it is now: state plus each node's live addresses and daemon pids."""
        from herd.fileutil import pid_alive, read_pid

        self._reload()
        partitioned = {n for pair in self._state["partitions"] for n in pair}
        nodes = []
        for info in self.nodes:
            addrs = subprocess.run(["ip", "-n", info.netns, "-j", "-4", "addr", "show"],
                                   capture_output=True, text=True, check=False).stdout
            addresses = {link["ifname"]: [f"{a['local']}/{a['prefixlen']}"
                                          for a in link.get("addr_info", [])]
                         for link in json.loads(addrs or "[]") if link["ifname"] != "lo"}
            daemons = {}
            for daemon in ("noded", "masterd"):
                pid = read_pid(info.paths.pid_file(daemon))
                daemons[daemon] = pid if pid_alive(pid) else None
            nodes.append({"name": info.name, "fqdn": info.fqdn, "netns": info.netns,
                          "root": str(info.root), "primary_ip": info.primary_ip,
                          "secondary_ip": info.secondary_ip, "addresses": addresses,
                          "crashed": info.name in self._state["crashed"],
                          "partitioned": info.name in partitioned, "daemons": daemons})
        return {"name": self.name, "switch_netns": self.switch_netns,
                "cluster": {"name": CLUSTER_NAME, "ip": CLUSTER_IP},
                "partitions": self._state["partitions"], "nodes": nodes}


@contextlib.contextmanager
def lab_cluster(nodes: int, name: str | None = None,
                start_daemons: bool = True, vg: str | None = None,
                vg_size_mib: int = DEFAULT_VG_SIZE_MIB) -> Iterator[Lab]:
    """A lab for one test: a unique name unless given, always torn down afterwards."""
    lab = Lab(name or f"t{uuid.uuid4().hex[:8]}")
    try:
        lab.up(nodes, start_daemons=start_daemons, vg=vg, vg_size_mib=vg_size_mib)
        yield lab
    finally:
        lab.down()
