"""Every filesystem path Herd uses, derived from one root.

Several nodes live on one machine in tests and in the lab, each with its own HERD_ROOT, so no
module may hard-code a path: they all ask :func:`current` (or build a :class:`HerdPaths` for an
explicit root).
"""

from __future__ import annotations

import os
from pathlib import Path

#: Ganeti's default OS search path (its configure's --with-os-search-path), relative to root.
GANETI_OS_SEARCH_PATH = ("srv/ganeti/os", "usr/local/lib/ganeti/os", "usr/lib/ganeti/os",
                         "usr/share/ganeti/os")
#: Where Ganeti's instance allocators are installed (absolute: they are programs of the
#: machine, not node state): Ganeti's default ($libdir/ganeti/iallocators), and where Debian's
#: ganeti-htools-3.0 puts hail when the ``ganeti`` package (which makes the link
#: /usr/lib/ganeti/iallocators) is not installed.
GANETI_IALLOCATOR_SEARCH_PATH = ("/usr/local/lib/ganeti/iallocators",
                                 "/usr/lib/ganeti/iallocators",
                                 "/usr/lib/ganeti/3.0/usr/lib/ganeti/iallocators")
#: Directory of the bundled OS definitions shipped with the source tree (``os/`` at the top).
BUNDLED_OS_DIR = Path(__file__).resolve().parent.parent / "os"


class HerdPaths:
    """The layout of one node's files under ``root``.

    A value (immutable, equal and hashable by its root) written by hand, not as a dataclass:
    every gnt-* command builds one, and ``dataclasses`` imports ``inspect`` (with ``ast`` and
    ``dis``), a few milliseconds of each command's start (issue 17)."""

    __slots__ = ("root",)
    root: Path

    def __init__(self, root: Path) -> None:
        object.__setattr__(self, "root", root)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"HerdPaths is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"HerdPaths is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.root == other.root  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.__class__, self.root))

    def __repr__(self) -> str:
        return f"HerdPaths(root={self.root!r})"

    def __reduce__(self) -> tuple[type[HerdPaths], tuple[Path]]:
        return (self.__class__, (self.root,))

    # -- persistent state -------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.root / "var/lib/herd"

    @property
    def config_file(self) -> Path:
        """The cluster configuration (authoritative on the master, copies on candidates)."""
        return self.data_dir / "config.data"

    @property
    def cluster_facts_file(self) -> Path:
        """Small per-node file of cluster facts (name, master, nodes, serial)."""
        return self.data_dir / "cluster-facts.json"

    @property
    def queue_db(self) -> Path:
        return self.data_dir / "queue.db"

    @property
    def etcd_dir(self) -> Path:
        """This node's etcd member (master candidates only): ``member.json`` says how it
        starts, ``data/`` is etcd's data dir. Removed when the node stops being a member.

        Beside Herd's state directory, not in it: etcd preallocates its write-ahead log in
        64 MiB files, and a full state filesystem must not take etcd down with it."""
        return self.root / "var/lib/herd-etcd"

    @property
    def etcd_spec_file(self) -> Path:
        return self.etcd_dir / "member.json"

    @property
    def etcd_data_dir(self) -> Path:
        return self.etcd_dir / "data"

    @property
    def ssl_dir(self) -> Path:
        return self.data_dir / "ssl"

    @property
    def ca_cert(self) -> Path:
        return self.ssl_dir / "cluster-ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.ssl_dir / "cluster-ca.key"

    @property
    def node_cert(self) -> Path:
        return self.ssl_dir / "node.pem"

    @property
    def node_key(self) -> Path:
        return self.ssl_dir / "node.key"

    @property
    def rapi_cert(self) -> Path:
        return self.ssl_dir / "rapi.pem"

    @property
    def rapi_cert_checked(self) -> Path:
        """Fingerprint of the RAPI certificate last found role-correct (see masterd)."""
        return self.ssl_dir / "rapi.pem.checked"

    @property
    def rapi_key(self) -> Path:
        return self.ssl_dir / "rapi.key"

    @property
    def rapi_users_file(self) -> Path:
        return self.data_dir / "rapi/users"

    @property
    def file_storage_dir(self) -> Path:
        return self.root / "srv/herd/file-storage"

    @property
    def os_dir(self) -> Path:
        """The node's own OS definitions directory (first in the search path)."""
        return self.root / "srv/herd/os"

    @property
    def hooks_dir(self) -> Path:
        """Ganeti's hooks directory (``<hpath>-pre.d``, ``<hpath>-post.d``, ``watcher``): at
        Ganeti's own place, so that a node's existing hook scripts keep working."""
        return self.root / "etc/ganeti/hooks"

    @property
    def os_search_path(self) -> list[Path]:
        """Herd's own directory, then Ganeti's search path in Ganeti's order (a node's
        existing OS definitions keep working), then the definitions Herd ships: in the
        package under /usr/share/herd/os, in a checkout at ``os/``."""
        return [self.os_dir, *(self.root / d for d in GANETI_OS_SEARCH_PATH),
                self.root / "usr/share/herd/os", BUNDLED_OS_DIR]

    @property
    def iallocator_search_path(self) -> list[Path]:
        """Herd's own directory of instance allocators (under the root), then Ganeti's."""
        return [self.root / "usr/lib/herd/iallocators",
                *(Path(d) for d in GANETI_IALLOCATOR_SEARCH_PATH)]

    # -- runtime state ----------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.root / "var/run/herd"

    @property
    def master_socket(self) -> Path:
        return self.run_dir / "masterd.sock"

    def pid_file(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.pid"

    @property
    def instance_run_dir(self) -> Path:
        """Per-instance runtime files of the hypervisor (pidfile, QMP, serial, runtime JSON)."""
        return self.run_dir / "kvm"

    @property
    def log_dir(self) -> Path:
        return self.root / "var/log/herd"

    def daemon_log(self, daemon: str) -> Path:
        return self.log_dir / f"{daemon}.log"

    @property
    def os_log_dir(self) -> Path:
        return self.log_dir / "os"

    def ensure(self) -> None:
        """Create the directories a node needs (idempotent)."""
        for d in (self.data_dir, self.ssl_dir, self.file_storage_dir, self.os_dir, self.run_dir,
                  self.instance_run_dir, self.log_dir, self.os_log_dir,
                  self.rapi_users_file.parent):
            d.mkdir(parents=True, exist_ok=True)
        self.ssl_dir.chmod(0o700)


def current() -> HerdPaths:
    """Paths for the root named by ``HERD_ROOT`` (default ``/``), read at each call."""
    return HerdPaths(Path(os.environ.get("HERD_ROOT", "/")))
