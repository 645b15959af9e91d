"""A ratchet on the master's logic knowing disk templates by name (issue 11, doc/issue11-plan.md).

Two things are counted in ``herd/logic``:

- comparisons (``==``, ``!=``, ``in``, ``not in``) of a template variable or attribute (a name
  containing ``template`` or ``dev_type``, or ``convert_to``) with template names ("drbd",
  "file", ...), a tuple/list/set of them, or a ``*_TEMPLATES`` table;
- positional access to a disk's logical id: ``x.logical_id[...]``, ``logical_id[...]`` and
  ``x["logical_id"][...]``. Those lists are the stored (v1) form; code reads the typed ids of
  ``herd.objects.disk_ids`` instead, so a shape change is made in one module.

Each count may only go down: when a change lowers one, lower its limit here in the same commit.
"""

from __future__ import annotations

import ast
from pathlib import Path

import herd.logic

TEMPLATE_NAMES = frozenset({"drbd", "file", "plain", "diskless", "sharedfile", "blockdev"})
LOGIC = Path(herd.logic.__file__).parent

#: Limits: the counts when the last change landed. Lower them, never raise them.
MAX_TEMPLATE_COMPARISONS = 0
MAX_LOGICAL_ID_SUBSCRIPTS = 0


def _identifier(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_template_variable(node: ast.expr) -> bool:
    name = _identifier(node)
    return name is not None and ("template" in name.lower() or name in ("dev_type",
                                                                        "convert_to"))


def _is_template_names(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in TEMPLATE_NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return bool(node.elts) and all(_is_template_names(e) for e in node.elts)
    name = _identifier(node)
    return name is not None and name.endswith("_TEMPLATES")


def _is_logical_id(node: ast.expr) -> bool:
    if _identifier(node) == "logical_id":
        return True
    return (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
            and node.slice.value == "logical_id")


def scan(tree: ast.AST) -> tuple[list[int], list[int]]:
    """Line numbers of template-name comparisons and of positional logical-id access."""
    comparisons: list[int] = []
    subscripts: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands[:-1], node.comparators, strict=True):
                if not isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn):
                    continue
                if ((_is_template_variable(left) and _is_template_names(right))
                        or (_is_template_variable(right) and _is_template_names(left))):
                    comparisons.append(node.lineno)
        elif isinstance(node, ast.Subscript) and _is_logical_id(node.value):
            subscripts.append(node.lineno)
    return comparisons, subscripts


def count_logic() -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    comparisons: dict[str, list[int]] = {}
    subscripts: dict[str, list[int]] = {}
    for path in sorted(LOGIC.rglob("*.py")):
        found, ids = scan(ast.parse(path.read_text(), str(path)))
        name = str(path.relative_to(LOGIC))
        if found:
            comparisons[name] = sorted(found)
        if ids:
            subscripts[name] = sorted(ids)
    return comparisons, subscripts


def _total(found: dict[str, list[int]]) -> int:
    return sum(len(lines) for lines in found.values())


def test_the_scanner_sees_each_form() -> None:
    sample = ast.parse(
        'a = inst.disk_template == "drbd"\n'
        'b = "file" != disk.dev_type\n'
        'c = template in ("drbd", "plain")\n'
        'd = t.convert_to not in params.MIRRORED_TEMPLATES\n'
        'e = disk.logical_id[2]\n'
        'f = d["logical_id"][1]\n'
        'g = inst.name == "drbd"\n'          # not a template variable
        'h = inst.disk_template == other\n'  # not a name
        'i = inst.disk_template is None\n')
    comparisons, subscripts = scan(sample)
    assert comparisons == [1, 2, 3, 4]
    assert subscripts == [5, 6]


def test_template_names_and_positional_ids_only_go_down() -> None:
    comparisons, subscripts = count_logic()
    message = (f"template-name comparisons in herd/logic: {_total(comparisons)} "
               f"(limit {MAX_TEMPLATE_COMPARISONS}) {comparisons}; positional logical_id "
               f"access: {_total(subscripts)} (limit {MAX_LOGICAL_ID_SUBSCRIPTS}) {subscripts}")
    assert _total(comparisons) <= MAX_TEMPLATE_COMPARISONS, message
    assert _total(subscripts) <= MAX_LOGICAL_ID_SUBSCRIPTS, message
    print(message)
