"""The gnt-* commands' connection to masterd (unix socket, line-delimited JSON).

It speaks through ``_socket``, the C module that the ``socket`` module wraps: a unix stream
socket needs none of the wrapper's additions (constants as enums, ``makefile``, ``sendfile``),
and importing the wrapper (an enum made of every constant, ``selectors``) was about 3 ms of
every command's start (issue 17), a tenth of a trivial job's latency.
"""

from __future__ import annotations

import _socket

from herd import errors, paths
from herd.rpc import master_protocol as proto

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing costs each gnt-* command ~2 ms at start
    from typing import Any


class MasterClient:
    def __init__(self, p: paths.HerdPaths | None = None, timeout: float = 120.0) -> None:
        self.paths = p or paths.current()
        self.timeout = timeout
        self._sock: _socket.socket | None = None
        self._buf = b""

    def _connect(self) -> _socket.socket:
        if self._sock is None:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.paths.master_socket))
            except OSError:
                sock.close()
                raise errors.HerdError(self._not_master_message()) from None
            self._sock = sock
        return self._sock

    def _not_master_message(self) -> str:
        from herd.config.facts import read_facts  # here: only when masterd is not reachable

        facts = read_facts(self.paths)
        if facts is None:
            return ("this node is not part of a cluster (no cluster facts); "
                    "run 'gnt-cluster init' first")
        name_file = self.paths.data_dir / "node-name"
        me = name_file.read_text().strip() if name_file.exists() else "?"
        if facts.get("master_node") != me:
            return (f"this node is not the master; the master is {facts.get('master_node')} "
                    "(run the command there)")
        return f"cannot reach herd-masterd at {self.paths.master_socket}: is it running?"

    def call(self, method: str, **args: Any) -> Any:
        sock = self._connect()
        sock.sendall(proto.encode({"method": method, "args": args}))
        while b"\n" not in self._buf:
            chunk = sock.recv(1 << 20)
            if not chunk:
                self.close()
                raise errors.HerdError("herd-masterd closed the connection (did it stop?)")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        answer = proto.decode(line)
        if not answer.get("ok"):
            raise errors.from_dict(answer.get("error") or {})
        return answer.get("result")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buf = b""

    def __enter__(self) -> MasterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
