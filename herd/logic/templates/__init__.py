"""Disk templates as objects, and the one place in logic that maps a template's name to one.

Logical units call :func:`template_of` (an instance's template) or :func:`by_name` (a name
from an OpCode) and then ask the object: they never compare template names themselves (the
ratchet in tests/unit/test_no_template_names.py counts what is left). Adding a template is a
module with a :class:`~herd.logic.templates.base.DiskTemplate` subclass and one entry in
``_REGISTRY``.
"""

from __future__ import annotations

from herd import errors
from herd.logic.templates.base import Claim, DiskTemplate, NewDisk, Volumes
from herd.logic.templates.diskless import DisklessTemplate
from herd.logic.templates.drbd import DrbdTemplate
from herd.logic.templates.file import FileTemplate
from herd.logic.templates.plain import PlainTemplate
from herd.objects import Instance, params

__all__ = ["Claim", "DiskTemplate", "NewDisk", "Volumes", "all_templates", "by_name",
           "template_of"]

_REGISTRY: dict[str, DiskTemplate] = {t.name: t for t in (
    DisklessTemplate(), FileTemplate(), PlainTemplate(), DrbdTemplate())}


def all_templates() -> list[DiskTemplate]:
    """Every template this version implements (messages listing what is possible)."""
    return list(_REGISTRY.values())


def by_name(name: str) -> DiskTemplate:
    """The template called ``name``: ParameterError for a name Ganeti does not know,
    OpPrereqError for one this version does not implement."""
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    if name in params.DISK_TEMPLATES:
        raise errors.OpPrereqError(f"disk template '{name}' is not supported yet")
    raise errors.ParameterError(f"invalid disk template '{name}': allowed are "
                                f"{', '.join(params.DISK_TEMPLATES)}")


def template_of(inst: Instance) -> DiskTemplate:
    """The template of ``inst``; a config naming an unknown one is a configuration error."""
    try:
        return _REGISTRY[inst.disk_template]
    except KeyError:
        raise errors.ConfigurationError(
            f"instance {inst.name} has unknown disk template '{inst.disk_template}'") from None
