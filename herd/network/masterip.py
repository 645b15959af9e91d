"""The master IP: an extra address on the master's network device, moved on master failover.

Clients (RAPI, admins) use the cluster name, which resolves to this address, so it must be on
exactly one node: the master. The address is set with iproute2's ``ip`` (as Ganeti's
``master-ip-setup`` does) rather than pyroute2: masterd needs three netlink calls per term, and
pyroute2 would keep about 10 MiB resident in it for that. The functions are synchronous; callers
in an event loop run them in a worker thread.
"""

from __future__ import annotations

import json
import logging
import subprocess

from herd import errors

log = logging.getLogger(__name__)

def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.OpExecError(f"cannot run 'ip {' '.join(args)}': {exc}") from None


def _message(result: subprocess.CompletedProcess[str]) -> str:
    """The last line ``ip`` printed (its error), or its exit status."""
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def has_master_ip(netdev: str, address: str) -> bool:
    result = _ip("-json", "address", "show", "dev", netdev)
    if result.returncode != 0:
        return False
    try:
        links = json.loads(result.stdout or "[]")
    except ValueError:
        return False
    return any(info.get("local") == address
               for link in links for info in link.get("addr_info", []))


def activate(netdev: str, address: str, prefix: int = 32) -> None:
    if not netdev or not address:
        return
    result = _ip("address", "add", f"{address}/{prefix}", "dev", netdev)
    if result.returncode == 0:
        log.info("master IP %s/%s added on %s", address, prefix, netdev)
        return
    # ``ip``'s words for "already there" changed between versions: ask instead of parsing
    if has_master_ip(netdev, address):
        return
    message = _message(result)
    if _ip("link", "show", "dev", netdev).returncode != 0:
        raise errors.OpExecError(f"master network device '{netdev}' does not exist on this node")
    raise errors.OpExecError(f"cannot add master IP {address} on {netdev}: {message}")


def deactivate(netdev: str, address: str, prefix: int = 32) -> None:
    if not netdev or not address:
        return
    result = _ip("address", "del", f"{address}/{prefix}", "dev", netdev)
    if result.returncode == 0:
        log.info("master IP %s removed from %s", address, netdev)
        return
    if not has_master_ip(netdev, address):
        return  # already gone, or no such device: nothing to remove
    raise errors.OpExecError(f"cannot remove master IP {address} from {netdev}: "
                             f"{_message(result)}")
