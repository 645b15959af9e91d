"""Log-in sessions of the web manager: held in herd-rapi's memory, named by a random token.

The cookie carries only the token (``HttpOnly``, ``Secure``, ``SameSite=Strict``); the
password is checked once at log-in against the RAPI users file and never stored. Each session
has its own CSRF token, which every POST must echo (a form field or the ``X-CSRF-Token``
header htmx sends). A session idle longer than :data:`IDLE_TIMEOUT` is gone; log-out removes
it at once. Sessions do not survive a restart of herd-rapi or a master failover: users log in
again (a later session may keep them in etcd).
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import time

COOKIE = "herd_session"
#: The cookie that carries the log-in form's CSRF token before there is a session.
LOGIN_COOKIE = "herd_login"
#: Seconds without a request after which a session ends.
IDLE_TIMEOUT = 30 * 60.0
#: At most this many sessions are kept (the oldest idle ones go first).
MAX_SESSIONS = 10000


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison (a wrong token reveals nothing of the right one)."""
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


def expired(last_seen: float, now: float, idle: float = IDLE_TIMEOUT) -> bool:
    """Whether a session last used at ``last_seen`` has ended by ``now``."""
    return now - last_seen >= idle


@dataclasses.dataclass
class Session:
    user: str
    csrf: str
    last_seen: float

    def __repr__(self) -> str:  # never the tokens, should a session end up in a log
        return f"Session(user={self.user!r})"


class SessionStore:
    def __init__(self, idle: float = IDLE_TIMEOUT, clock: object = time.monotonic) -> None:
        self.idle = idle
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def _now(self) -> float:
        return self.clock()  # type: ignore[operator, no-any-return]

    def create(self, user: str) -> tuple[str, Session]:
        now = self._now()
        self._sweep(now)
        token = new_token()
        session = Session(user=user, csrf=new_token(), last_seen=now)
        self._sessions[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (its idle clock restarted), None if there is none."""
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        now = self._now()
        if expired(session.last_seen, now, self.idle):
            del self._sessions[token]
            return None
        session.last_seen = now
        return session

    def holds(self, session: Session) -> bool:
        """Whether ``session`` is still live (not logged out, dropped or idle too long),
        without restarting its idle clock: a job stream asks this as it goes."""
        return any(s is session for s in self._sessions.values()) \
            and not expired(session.last_seen, self._now(), self.idle)

    def drop(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def drop_user(self, user: str) -> None:
        for token in [t for t, s in self._sessions.items() if s.user == user]:
            del self._sessions[token]

    def _sweep(self, now: float) -> None:
        for token in [t for t, s in self._sessions.items()
                      if expired(s.last_seen, now, self.idle)]:
            del self._sessions[token]
        while len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda t: self._sessions[t].last_seen)
            del self._sessions[oldest]

    def __len__(self) -> int:
        return len(self._sessions)
