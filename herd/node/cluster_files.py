"""A node's copies of cluster-wide files: the cluster facts and TLS material (candidates also
hold the CA key and the RAPI certificate, to take over). The config itself lives in etcd.

The master pushes them; a node never lets older facts replace newer ones (the serial number
decides), so a delayed push cannot roll a node back. Paths sent over RPC are relative to
the node's root: on a real node that is ``/``; in the lab each node has its own HERD_ROOT.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

from herd import errors
from herd.config.facts import node_name, read_facts
from herd.fileutil import atomic_write, atomic_write_json
from herd.paths import HerdPaths

RAPI_USERS = "rapi-users"
#: TLS files that master candidates hold besides the node's own (so any of them can take over).
CANDIDATE_SSL_FILES = ("cluster-ca.key", "rapi.pem", "rapi.key")
#: Files every node holds (and gets again on redist-conf): the CA certificate, and the RAPI
#: users file, so that RAPI works with the same users wherever the master moves.
NODE_SSL_FILES = ("cluster-ca.pem", RAPI_USERS)


class ClusterFiles:
    def __init__(self, paths: HerdPaths) -> None:
        self.paths = paths

    def _config_serial(self) -> int:
        try:
            return int(json.loads(self.paths.config_file.read_text())["serial_no"])
        except (OSError, ValueError, KeyError):
            return 0

    def local_serial(self) -> int:
        facts = read_facts(self.paths) or {}
        return max(self._config_serial(), int(facts.get("serial_no", 0)))

    def config_upload(self, config: dict[str, Any] | None, facts: dict[str, Any],
                      ssl: dict[str, str] | None = None, force: bool = False) -> int:
        """A candidate's files. ``config`` None (the config lives in etcd): only the facts and
        the candidates' TLS files; a config.data left from before etcd is removed, so that
        nothing reads an outdated copy."""
        if config is None:
            self.write_ssl(ssl or {}, CANDIDATE_SSL_FILES + NODE_SSL_FILES)
            self.paths.config_file.unlink(missing_ok=True)
            return self.facts_upload(facts, force=force)
        serial = int(config["serial_no"])
        if serial < self._config_serial() and not force:
            return self._config_serial()
        self.write_ssl(ssl or {}, CANDIDATE_SSL_FILES + NODE_SSL_FILES)
        atomic_write_json(self.paths.config_file, config)
        self.facts_upload(facts, force=True)
        return serial

    def write_ssl(self, files: dict[str, str], allowed: tuple[str, ...]) -> None:
        for name, content in files.items():
            if name not in allowed:
                raise errors.ParameterError(f"refusing to write TLS file '{name}' here")
            mode = 0o600 if name.endswith(".key") or name == RAPI_USERS else 0o644
            path = self.path_of(name)
            if not path.exists() or path.read_text() != content:
                atomic_write(path, content, mode)
            elif path.stat().st_mode & 0o7777 != mode:
                path.chmod(mode)  # same content, loose mode: the push tightens it

    def path_of(self, name: str) -> Path:
        """Where a distributed file named ``name`` lives on this node."""
        if name == RAPI_USERS:
            return self.paths.rapi_users_file
        return self.paths.ssl_dir / name

    def facts_upload(self, facts: dict[str, Any], force: bool = False,
                     ssl: dict[str, str] | None = None) -> int:
        current = read_facts(self.paths) or {}
        if int(facts["serial_no"]) < int(current.get("serial_no", 0)) and not force:
            return int(current["serial_no"])
        self.write_ssl(ssl or {}, NODE_SSL_FILES)
        atomic_write_json(self.paths.cluster_facts_file, facts, 0o644)
        return int(facts["serial_no"])

    def drop_config(self) -> None:
        """A demoted candidate forgets the config and the candidates' TLS files."""
        self.paths.config_file.unlink(missing_ok=True)
        for name in CANDIDATE_SSL_FILES:
            (self.paths.ssl_dir / name).unlink(missing_ok=True)

    def master_info(self) -> dict[str, Any]:
        facts = read_facts(self.paths) or {}
        return {"node_name": node_name(self.paths), "master_node": facts.get("master_node"),
                "serial_no": self.local_serial()}

    def resolve(self, relpath: str) -> Path:
        rel = PurePosixPath(relpath.lstrip("/"))
        if ".." in rel.parts or not rel.parts:
            raise errors.ParameterError(f"invalid path '{relpath}'")
        return self.paths.root / rel

    def checksums(self, relpaths: list[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for rel in relpaths:
            try:
                out[rel] = hashlib.sha256(self.resolve(rel).read_bytes()).hexdigest()
            except OSError:
                out[rel] = None
        return out

    def file_upload(self, relpath: str, content_b64: str, mode: int) -> None:
        atomic_write(self.resolve(relpath), base64.b64decode(content_b64), mode & 0o7777)
