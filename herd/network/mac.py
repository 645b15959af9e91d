"""MAC addresses of instance NICs: Ganeti's format, prefix and random allocation.

Ganeti gives every NIC a MAC under the cluster's prefix (default ``aa:00:00``, a locally
administered unicast range) with a random suffix, never reusing one already in the cluster.
"""

from __future__ import annotations

import random
import re

from herd.errors import ParameterError

DEFAULT_PREFIX = "aa:00:00"
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_PREFIX = re.compile(r"^[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$")


def normalize_mac(mac: str) -> str:
    """The MAC in lowercase colon form; ParameterError if it is not six hex octets."""
    value = mac.strip().lower() if isinstance(mac, str) else ""
    if not _MAC.match(value):
        raise ParameterError(
            f"invalid MAC address '{mac}': expected six hex octets like aa:00:00:12:34:56")
    return value


def check_prefix(prefix: str) -> str:
    """A cluster MAC prefix (three octets), normalized; ParameterError if malformed."""
    value = prefix.strip().lower() if isinstance(prefix, str) else ""
    if not _PREFIX.match(value):
        raise ParameterError(
            f"invalid MAC prefix '{prefix}': expected three hex octets like aa:00:00")
    if int(value[:2], 16) & 1:
        raise ParameterError(
            f"invalid MAC prefix '{prefix}': the first octet must be unicast (even)")
    return value


def generate_mac(prefix: str = DEFAULT_PREFIX, used: set[str] | None = None,
                 rng: random.Random | None = None) -> str:
    """A random MAC under ``prefix`` that is not in ``used`` (compared normalized)."""
    prefix = check_prefix(prefix)
    taken = {normalize_mac(m) for m in used or set()}
    rand = rng or random.SystemRandom()
    if sum(1 for m in taken if m.startswith(prefix + ":")) >= 1 << 24:
        raise ParameterError(f"no free MAC address left under prefix {prefix}")
    while True:
        suffix = rand.getrandbits(24)
        mac = f"{prefix}:{suffix >> 16:02x}:{(suffix >> 8) & 0xff:02x}:{suffix & 0xff:02x}"
        if mac not in taken:
            return mac
