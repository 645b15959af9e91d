"""Who may do what: roles, grants on paths, owners by tag. Pure functions, no I/O.

The web manager (and later RAPI) asks one question: may this principal do this action on this
target? The answer comes from three sources, of which the highest role wins:

- the RAPI users file: a ``write`` user is an operator on ``/`` (Ganeti's meaning of write), a
  user listed with the explicit ``read`` option a viewer on ``/``; a user without options has
  no role of its own, so an admin can make web users who see only what they own or were
  granted (Ganeti's RAPI still lets such a user read: RAPI keeps its own rules for now);
- grants (cluster config ``access_grants``): a role given to a user or a group (``@name``) on
  ``/`` (everything), ``/groups/G`` (the instances whose primary node is in node group G) or
  ``/instances/I`` (one instance), inherited downwards;
- ownership: an instance tagged ``herd:owner:USER`` or ``herd:owner:@GROUP`` gives its
  owners the ``user`` role on it (so ``gnt-instance add-tags`` makes an owner).

Group membership is the cluster config's ``access_groups`` (group name -> user names).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from herd.errors import ParameterError

#: Roles from least to most; each includes everything the roles before it may do.
ROLES = ("viewer", "user", "operator", "admin")
#: The least role an action needs (a declarative table: pages and routes ask by action).
ACTIONS: dict[str, str] = {
    "view": "viewer",       # see the object, its jobs
    "power": "user",        # start, stop, reboot
    "console": "user",
    "tags": "user",
    "create": "user",       # create instances (on / or a node group)
    "modify": "operator",
    "migrate": "operator",  # migrate, failover
    "remove": "operator",
    "admin": "admin",       # grants, groups, cluster settings
}
OWNER_TAG = "herd:owner:"
_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@+-]{0,63}$")


def rank(role: str | None) -> int:
    """0 for no role, 1.. for the roles in :data:`ROLES` order."""
    return ROLES.index(role) + 1 if role in ROLES else 0


def higher(a: str | None, b: str | None) -> str | None:
    return a if rank(a) >= rank(b) else b


@dataclasses.dataclass(frozen=True)
class Grant:
    role: str
    subject: str  # a user name, or @group
    path: str = "/"  # /, /groups/G, /instances/I
    #: On /instances/I: the uuid the instance had when granted. The grant follows that
    #: instance through a rename and dies with it: a new instance given the name of a removed
    #: one is not shared with the removed one's grantees.
    uuid: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Grant:
        grant = check_grant(str(data.get("role", "")), str(data.get("subject", "")),
                            str(data.get("path", "/")))
        uuid = data.get("uuid")
        return dataclasses.replace(grant, uuid=str(uuid)) if uuid else grant

    def applies_to(self, target: Target) -> bool:
        """Whether the grant covers ``target`` (its path is the target's or above it)."""
        if self.uuid is not None and target.uuid is not None:
            return self.uuid == target.uuid
        return self.path in _paths(target)


def check_grant(role: str, subject: str, path: str = "/") -> Grant:
    """A valid grant, or ParameterError naming the bad value and what is allowed."""
    if role not in ROLES:
        raise ParameterError(f"invalid role {role!r}: allowed are {', '.join(ROLES)}")
    name = subject[1:] if subject.startswith("@") else subject
    if not _NAME.match(name):
        raise ParameterError(f"invalid grant subject {subject!r}: expected a user name or "
                             "@group (letters, digits, '.', '_', '-')")
    kind, _, rest = path.strip("/").partition("/")
    if path != "/" and (kind not in ("groups", "instances") or not rest or "/" in rest):
        raise ParameterError(f"invalid grant path {path!r}: allowed are /, /groups/GROUP and "
                             "/instances/INSTANCE")
    return Grant(role, subject, path)


@dataclasses.dataclass(frozen=True)
class Principal:
    """A logged-in user: name, the groups it belongs to, its role from the users file."""

    name: str
    groups: frozenset[str] = frozenset()
    base_role: str | None = None

    def subjects(self) -> frozenset[str]:
        return frozenset({self.name, *(f"@{g}" for g in self.groups)})


@dataclasses.dataclass(frozen=True)
class Target:
    """What an action is on: the cluster (all None), a node group, or an instance (with the
    node group of its primary node and its tags)."""

    group: str | None = None
    instance: str | None = None
    tags: tuple[str, ...] = ()
    uuid: str | None = None  # the instance's


CLUSTER = Target()


def instance_target(row: dict[str, Any]) -> Target:
    """The target of an instance from its query row (RAPI's and the web manager's checks)."""
    return Target(group=row.get("pnode.group") or None, instance=row["name"],
                  tags=tuple(row.get("tags") or ()), uuid=row.get("uuid"))


def base_role(options: Iterable[str]) -> str | None:
    """The users file's part: ``write`` is an operator, an explicit ``read`` a viewer."""
    opts = set(options)
    if "write" in opts:
        return "operator"
    if "read" in opts:
        return "viewer"
    return None


def groups_of(user: str, groups: Mapping[str, Iterable[str]]) -> frozenset[str]:
    return frozenset(g for g, members in groups.items() if user in members)


def owners(tags: Iterable[str]) -> frozenset[str]:
    """The subjects (users, @groups) an instance's tags name as owners."""
    return frozenset(t[len(OWNER_TAG):] for t in tags
                     if t.startswith(OWNER_TAG) and len(t) > len(OWNER_TAG))


def _paths(target: Target) -> tuple[str, ...]:
    paths = ["/"]
    if target.group is not None:
        paths.append(f"/groups/{target.group}")
    if target.instance is not None:
        paths.append(f"/instances/{target.instance}")
    return tuple(paths)


def role_on(who: Principal, target: Target, grants: Iterable[Grant]) -> str | None:
    """The highest role ``who`` has on ``target``: users file, grants on the target or above
    it, ownership of an instance."""
    role = who.base_role
    subjects = who.subjects()
    for grant in grants:
        if grant.subject in subjects and grant.applies_to(target):
            role = higher(role, grant.role)
    if target.instance is not None and subjects & owners(target.tags):
        role = higher(role, "user")
    return role


def allowed(who: Principal, action: str, target: Target, grants: Iterable[Grant]) -> bool:
    """Whether ``who`` may do ``action`` on ``target`` (an unknown action is refused)."""
    need = ACTIONS.get(action)
    return need is not None and rank(role_on(who, target, grants)) >= rank(need)


def parse_grants(raw: Iterable[Mapping[str, Any]]) -> list[Grant]:
    """Grants as stored in the config; an invalid entry is skipped (it was checked when it was
    added, and one bad entry must not lock everybody out)."""
    out = []
    for item in raw:
        try:
            out.append(Grant.from_dict(item))
        except ParameterError:
            continue
    return out
