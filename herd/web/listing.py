"""Sorting, filtering and paging of query rows on the server (pure functions).

The rows are those of Herd's own query layer (herd.logic.query, the registry RAPI and the CLI
read), so a page shows what ``gnt-instance list`` shows. Columns are a declarative table:
each has a label, how to read it from a row (for display, search and sort) and whether it can
be searched with ``column:value``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from herd.fields import INSTANCE as INSTANCE_FIELDS
from herd.objects.access import owners

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Column:
    key: str
    label: str
    get: Callable[[Row], Any]
    #: the prefix of a search term that looks only at this column (e.g. ``node:n1``)
    search: str | None = None


def _text(value: Any) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        return " ".join(str(v) for v in value)
    return "" if value is None else str(value)


def _field(name: str, key: str | None = None, search: str | None = None,
           label: str | None = None) -> Column:
    """A column showing one registry field (herd.fields.INSTANCE): titled as the CLI and
    RAPI title it, unless a page label reads better to people who never typed ``-o``
    (Ganeti's "ConfigMaxMem" is "Memory" here)."""
    return Column(key or name, label or INSTANCE_FIELDS.title(name), lambda r: r.get(name),
                  search)


INSTANCE_COLUMNS: tuple[Column, ...] = (
    _field("name", search="name", label="Name"),
    _field("status", search="status"),
    _field("pnode", search="node", label="Node"),
    _field("os", search="os"),
    _field("be/vcpus", "vcpus", label="vCPUs"),
    _field("be/memory", "memory", label="Memory"),
    _field("disk_usage", "disk", label="Disk"),
    Column("owner", "Owner", lambda r: sorted(owners(r.get("tags") or ())), "owner"),
    _field("tags", search="tag"),
)
#: The fields the instance table reads (its columns and its template, instances_table.html).
INSTANCE_TABLE_FIELDS = ("name", "status", "pnode", "os", "be/vcpus", "be/memory",
                         "disk_usage", "tags")
NODE_COLUMNS: tuple[Column, ...] = (
    Column("name", "Name", lambda r: r.get("name"), "name"),
    Column("role", "Role", lambda r: r.get("role"), "role"),
    Column("group", "Group", lambda r: r.get("group"), "group"),
    Column("pinst", "Primaries", lambda r: r.get("pinst_cnt")),
    Column("sinst", "Secondaries", lambda r: r.get("sinst_cnt")),
    Column("mtotal", "Memory (MiB)", lambda r: r.get("mtotal")),
    Column("mfree", "Free memory (MiB)", lambda r: r.get("mfree")),
    Column("dtotal", "Disk (MiB)", lambda r: r.get("dtotal")),
    Column("dfree", "Free disk (MiB)", lambda r: r.get("dfree")),
    Column("tags", "Tags", lambda r: r.get("tags") or [], "tag"),
)
#: The number of rows on one page, unless the request asks for another (at most MAX_PER_PAGE).
PER_PAGE = 50
MAX_PER_PAGE = 500


def column(columns: Sequence[Column], key: str) -> Column | None:
    return next((c for c in columns if c.key == key), None)


def matches(row: Row, query: str, columns: Sequence[Column]) -> bool:
    """Every blank-separated term must match: ``prefix:value`` looks in that column (tags,
    owners: one equal or containing item), a bare term in any searchable column."""
    for term in query.split():
        prefix, sep, value = term.partition(":")
        col = next((c for c in columns if c.search == prefix.lower()), None) if sep else None
        if col is not None:
            cells = [col.get(row)]
            needle = value.lower()
        else:
            cells = [c.get(row) for c in columns if c.search]
            needle = term.lower()
        if not any(needle in _text(cell).lower() for cell in cells):
            return False
    return True


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, "")
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int | float):
        return (0, value)
    return (1, _text(value).lower())


@dataclasses.dataclass(frozen=True)
class Page:
    rows: list[Row]
    total: int  # rows after filtering
    page: int
    pages: int
    sort: str
    descending: bool
    query: str
    per_page: int


def page(rows: Sequence[Row], columns: Sequence[Column], *, query: str = "",
         sort: str = "name", descending: bool = False, number: int = 1,
         per_page: int = PER_PAGE) -> Page:
    """Filter by ``query``, sort by column ``sort`` (an unknown column: by name), cut out page
    ``number`` (clamped to the pages there are)."""
    col = column(columns, sort) or columns[0]
    kept = [r for r in rows if matches(r, query, columns)] if query.strip() else list(rows)
    kept.sort(key=lambda r: (_sort_key(col.get(r)), _text(r.get("name"))), reverse=descending)
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    pages = max(1, math.ceil(len(kept) / per_page))
    number = max(1, min(number, pages))
    start = (number - 1) * per_page
    return Page(rows=kept[start:start + per_page], total=len(kept), page=number, pages=pages,
                sort=col.key, descending=descending, query=query, per_page=per_page)


def page_for(rows: Sequence[Row], columns: Sequence[Column], params: Mapping[str, str]) -> Page:
    """:func:`page` as a list page's query string asks (``q``, ``sort``, ``desc``, ``page``,
    ``per_page``; numbers that are not numbers: the first page, the default size)."""
    try:
        number = int(params.get("page", "1"))
        per_page = int(params.get("per_page", str(PER_PAGE)))
    except ValueError:
        number, per_page = 1, PER_PAGE
    return page(rows, columns, query=params.get("q", ""), sort=params.get("sort", "name"),
                descending=params.get("desc") == "1", number=number, per_page=per_page)
