"""The RAPI users file (Ganeti's format and place) and HTTP Basic authentication.

One user per line: ``NAME PASSWORD [OPTIONS]``; ``#`` starts a comment. The password is clear
text, ``{cleartext}TEXT`` or ``{HA1}HEX`` (the MD5 of ``NAME:Ganeti Remote API:PASSWORD``);
scheme prefixes are case-insensitive. OPTIONS is a comma-separated list of ``read`` and
``write``; ``write`` implies ``read``, and a user without options may read (Ganeti's rule that
reading needs no option). The file is re-read whenever it changes (checked at each request by
its inode, size and mtime, which costs one stat).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from herd.rapi.errors import REALM, HttpError, forbidden, unauthorized
from herd.rapi.throttle import LoginThrottle, retry_after

log = logging.getLogger("herd.rapi.auth")

ACCESS_READ = "read"
ACCESS_WRITE = "write"


@dataclass(frozen=True)
class User:
    name: str
    password: str
    options: frozenset[str] = field(default_factory=frozenset)

    def may(self, access: str | None) -> bool:
        if access is None:
            return True
        if access == ACCESS_READ:
            return True  # every listed user may read; write implies read
        return access in self.options


def parse_users(text: str) -> dict[str, User]:
    users: dict[str, User] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 2:
            log.warning("users file: ignoring line without a password: %r", parts[0])
            continue
        options = frozenset(o.strip().lower() for o in parts[2].split(",") if o.strip()) \
            if len(parts) == 3 else frozenset()
        users[parts[0]] = User(parts[0], parts[1], options)
    return users


def ha1(name: str, password: str) -> str:
    return hashlib.md5(f"{name}:{REALM}:{password}".encode(), usedforsecurity=False).hexdigest()


def check_password(user: User, given: str) -> bool:
    stored = user.password
    if stored.startswith("{"):
        scheme, sep, value = stored[1:].partition("}")
        if not sep:
            return False
        scheme = scheme.lower()
        if scheme == "cleartext":
            return hmac.compare_digest(value.encode(), given.encode())
        if scheme == "ha1":
            return hmac.compare_digest(value.lower().encode(), ha1(user.name, given).encode())
        log.warning("users file: unknown password scheme '%s' for user %s", scheme, user.name)
        return False
    return hmac.compare_digest(stored.encode(), given.encode())


class UsersFile:
    """The users file, loaded again when it changes; a missing file means no users."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, User] = {}

    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            if self._stamp is not None or self._users:
                log.warning("no users file at %s: nobody can log in", self.path)
            self._stamp, self._users = None, {}
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        try:
            self._users = parse_users(self.path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            log.error("cannot read users file %s: %s", self.path, exc)
            self._users = {}
        self._stamp = stamp
        log.info("loaded %d RAPI user(s) from %s", len(self._users), self.path)

    def get(self, name: str) -> User | None:
        self._reload()
        return self._users.get(name)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise HttpError(400, "Invalid basic authorization header") from None
    name, sep, password = decoded.partition(":")
    if not sep:
        raise HttpError(400, "Basic authentication requires password")
    return name, password


def authenticate(users: UsersFile, header: str | None, access: str | None,
                 throttle: LoginThrottle | None = None, client: str = "",
                 now: float | None = None) -> str:
    """Return the user name, or raise 401 (no or wrong credentials), 403 (no permission) or
    429 (too many failed logins from this client: the password is not even checked)."""
    creds = basic_credentials(header)
    if creds is None:
        raise unauthorized()
    name, password = creds
    now = time.monotonic() if now is None else now
    if throttle is not None:
        wait = throttle.wait(client, name, now)
        if wait > 0:
            raise HttpError(429, "Too many failed logins; try again later",
                            {"Retry-After": retry_after(wait)})
    user = users.get(name)
    if user is None or not check_password(user, password):
        if throttle is not None:
            throttle.failed(client, name, now)
        raise unauthorized()
    if not user.may(access):
        log.warning("user '%s' lacks permission '%s'", name, access)
        raise forbidden()
    return name
