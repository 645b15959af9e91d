"""Back-off after failed RAPI logins: a guesser is slowed, the right password of others is not.

Before this, 500 wrong passwords were all checked and answered at 183 per second. Now a client
address that failed ``free`` times must wait before its next login is even checked: 1 s, then
2, 4, ... up to a minute, doubling with each further failure. While it waits, its requests are
answered 429 with ``Retry-After`` and the password is not looked at, so waiting out the delay is
the only way to get another guess checked.

A guesser with many addresses is slowed per user name as well, but the user's back-off applies
only to addresses that have themselves failed recently: a client whose logins from its address
never failed is always checked, so an attack on ``admin`` does not lock the real admin out.

A success does not wipe an address's record: otherwise a guesser who knows one valid account
(a read-only monitor, say) could reset its back-off between guesses. Records are forgotten after
``forget`` seconds without a failure, and the tables are bounded so that guessing many user
names cannot grow them without end.

The decisions are pure functions of the records and the time (:func:`wait_before_check`,
:func:`record_failure`); :class:`LoginThrottle` only keeps the records.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

log = logging.getLogger("herd.rapi.auth")


@dataclass(frozen=True)
class Policy:
    """How failures turn into waiting."""

    #: failures from one address before it has to wait
    free: int = 5
    #: failures for one user name (from all addresses) before failing addresses have to wait
    user_free: int = 20
    #: the first wait, doubled with each further failure
    base: float = 1.0
    #: the longest wait
    cap: float = 60.0
    #: a record without a failure for this long is forgotten
    forget: float = 900.0


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class Failures:
    """Failed logins of one address or one user name: how many, and when the last one was."""

    count: int
    last: float


def delay_after(count: int, free: int, policy: Policy = DEFAULT_POLICY) -> float:
    """How long to wait after the ``count``-th failure when ``free`` failures are free."""
    if count < free:
        return 0.0
    return min(policy.cap, policy.base * 2.0 ** min(count - free, 64))


def _current(rec: Failures | None, now: float, policy: Policy) -> Failures | None:
    if rec is None or now - rec.last > policy.forget:
        return None
    return rec


def wait_before_check(now: float, by_address: Failures | None, by_user: Failures | None,
                      policy: Policy = DEFAULT_POLICY) -> float:
    """Seconds this login attempt must still wait before its password is checked (0: check
    it now). The user's back-off counts only for an address that has failed itself."""
    address = _current(by_address, now, policy)
    user = _current(by_user, now, policy)
    wait = 0.0
    if address is not None:
        wait = max(wait, address.last + delay_after(address.count, policy.free, policy) - now)
        if user is not None:
            wait = max(wait, user.last + delay_after(user.count, policy.user_free, policy)
                       - now)
    return max(0.0, wait)


def record_failure(rec: Failures | None, now: float,
                   policy: Policy = DEFAULT_POLICY) -> Failures:
    """The record after one more failure at ``now``."""
    current = _current(rec, now, policy)
    return Failures((current.count if current else 0) + 1, now)


class LoginThrottle:
    """The failure records of addresses and user names, bounded to ``max_entries`` each."""

    def __init__(self, policy: Policy = DEFAULT_POLICY, max_entries: int = 4096) -> None:
        self.policy = policy
        self.max_entries = max_entries
        self.by_address: dict[str, Failures] = {}
        self.by_user: dict[str, Failures] = {}

    def wait(self, address: str, user: str, now: float) -> float:
        return wait_before_check(now, self.by_address.get(address), self.by_user.get(user),
                                 self.policy)

    def failed(self, address: str, user: str, now: float) -> None:
        rec = record_failure(self.by_address.get(address), now, self.policy)
        self._put(self.by_address, address, rec, now)
        self._put(self.by_user, user, record_failure(self.by_user.get(user), now, self.policy),
                  now)
        if rec.count == self.policy.free:
            log.warning("%d failed RAPI logins from %s (last as user %r): further logins "
                        "from there wait before they are checked", rec.count, address, user)

    def _put(self, table: dict[str, Failures], key: str, rec: Failures, now: float) -> None:
        table.pop(key, None)
        table[key] = rec  # dicts keep insertion order: the first key is the oldest failure
        if len(table) > self.max_entries:
            for old in [k for k, r in table.items() if now - r.last > self.policy.forget]:
                del table[old]
            while len(table) > self.max_entries:
                del table[next(iter(table))]


def retry_after(wait: float) -> str:
    """The ``Retry-After`` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))
