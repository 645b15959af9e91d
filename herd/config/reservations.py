"""What running jobs have claimed but not yet saved: instance names, MAC addresses, mirror
ports. One object per masterd (MasterContext.reservations), not module globals: a second
masterd in the same process (tests) or a new master starts with none, and every operation that
hands out a name, a MAC or a port asks the same object, so an add and a modify cannot give the
same port twice. The config holds what is saved; ``in_use`` is both together.
"""

from __future__ import annotations

from collections import defaultdict

KINDS = ("name", "mac", "port", "ip")


class Reservations:
    def __init__(self) -> None:
        self._held: dict[str, dict[object, object]] = {kind: {} for kind in KINDS}
        self._by_owner: dict[object, list[tuple[str, object]]] = defaultdict(list)

    def claimed(self, kind: str) -> set[object]:
        return set(self._held[kind])

    def claim(self, kind: str, value: object, owner: object) -> bool:
        """Claim ``value`` for ``owner``; False if another owner holds it."""
        holder = self._held[kind].get(value)
        if holder is not None and holder is not owner:
            return False
        if holder is None:
            self._held[kind][value] = owner
            self._by_owner[owner].append((kind, value))
        return True

    def release(self, owner: object) -> None:
        """Everything ``owner`` claimed (its job ended, saved or not)."""
        for kind, value in self._by_owner.pop(owner, []):
            if self._held[kind].get(value) is owner:
                del self._held[kind][value]
