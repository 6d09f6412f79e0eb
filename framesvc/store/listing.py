"""CVAT's list query language, translated to SQL: ``sort``, ``search``, simple filters, JSON-Logic.

Every CVAT list endpoint (``/api/users``, ``/api/tasks``, ``/api/jobs``, ``/api/labels``)
accepts the same four kinds of query parameters over a per-resource set of field names:

* ``sort=a,-b`` - comma list of fields, ``-`` for descending; the default is ``-id``.
  An unknown field is a 400 (CVAT silently ignores it; a typo then looks like a bug in
  the data, so we say so instead).
* ``search=term`` - DRF's SearchFilter: terms split on whitespace and commas; each term
  must occur (case-insensitively) in at least one of the search fields.
* ``<field>=value`` - equality on a "simple filter" field.
* ``filter=<JSON-Logic>`` - CVAT's JSON-Logic subset over the sortable fields, translated
  by :mod:`framesvc.store.filters` (the project's one translator; see there).

A resource describes its fields once with :class:`ListFields` (public name -> SQL
expression); :func:`apply_list_query` returns the filtered and ordered ``Select``.
Values are converted to the column's type so that ``id=abc`` is a 400, not a 500.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from framesvc.store.filters import Aliases, ListQueryError, coerce, json_logic_where
from framesvc.store.schema import NUL_MESSAGE

__all__ = ["ListFields", "ListQueryError", "apply_list_query", "simple_value"]


@dataclass(frozen=True)
class ListFields:
    """The public field names of one resource and the SQL behind each."""

    #: Public name -> SQL expression over the listed table (scalar subqueries allowed).
    columns: Mapping[str, sa.ColumnElement[Any]]
    #: Fields accepted by ``sort`` and by JSON-Logic ``var`` (CVAT's ``filter_fields``,
    #: which are also its ``ordering_fields``).
    sortable: Sequence[str]
    #: Fields accepted as ``<field>=value`` equality filters.
    simple: Sequence[str]
    #: Fields searched by ``search``.
    search: Sequence[str]
    #: Final tie-breaker so that pages never overlap (``id`` of the listed table).
    pk: sa.ColumnElement[Any] = field(default=None)  # type: ignore[assignment]
    default_sort: str = "-id"
    #: Other spellings of stored values accepted by filters (see ``store/filters.py``).
    aliases: Aliases = field(default_factory=dict)

    @property
    def filterable(self) -> dict[str, sa.ColumnElement[Any]]:
        """Name -> SQL of the fields a JSON-Logic ``filter`` may name."""
        return {name: self.columns[name] for name in self.sortable if name in self.columns}


_SEARCH_SPLIT = re.compile(r"[\s,]+")


def simple_value(fields: ListFields, name: str, raw: str) -> Any:
    """A ``<field>=value`` query value as the field's type; a 400 if it is not one."""
    try:
        value = coerce(fields.columns[name], raw)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ListQueryError({name: [f"Invalid value: {raw!r}."]}) from exc
    if isinstance(value, str):
        return fields.aliases.get(name, {}).get(value, value)
    return value


def _order_by(fields: ListFields, raw: str) -> list[sa.ColumnElement[Any]]:
    clauses: list[sa.ColumnElement[Any]] = []
    seen: set[str] = set()
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        desc = part.startswith("-")
        name = part.lstrip("-+")
        if name not in fields.sortable or name not in fields.columns:
            raise ListQueryError(
                {"sort": [f"Unsupported sort field '{name}'. "
                          f"Available fields: {', '.join(sorted(fields.sortable))}."]}
            )
        if name in seen:
            continue
        seen.add(name)
        expr = fields.columns[name]
        # PostgreSQL's (and so CVAT's) placement of nulls on every backend: last when
        # ascending, first when descending.  SQLite's own default is the opposite.
        clauses.append(expr.desc().nulls_first() if desc else expr.asc().nulls_last())
    return clauses


def _search(fields: ListFields, raw: str) -> sa.ColumnElement[bool] | None:
    terms = [t for t in _SEARCH_SPLIT.split(raw) if t]
    if not terms:
        return None
    if "\x00" in raw:  # PostgreSQL cannot compare such text (store/schema.py: String)
        raise ListQueryError({"search": [NUL_MESSAGE]})
    per_term = []
    for term in terms:
        pattern = "%" + term.lower().replace("\\", "\\\\").replace("%", "\\%").replace(
            "_", "\\_") + "%"
        per_term.append(
            sa.or_(
                *(
                    sa.func.lower(sa.cast(fields.columns[name], sa.String)).like(
                        pattern, escape="\\"
                    )
                    for name in fields.search
                )
            )
        )
    return sa.and_(*per_term)


def apply_list_query(
    query: sa.Select[Any], fields: ListFields, params: Mapping[str, str]
) -> sa.Select[Any]:
    """``query`` narrowed by the simple filters, ``search`` and ``filter``, then ordered."""
    for name in fields.simple:
        if name in params:
            expr = fields.columns[name]
            query = query.where(expr == simple_value(fields, name, params[name]))
    if params.get("search"):
        clause = _search(fields, params["search"])
        if clause is not None:
            query = query.where(clause)
    if "filter" in params:
        query = query.where(
            json_logic_where(fields.filterable, params["filter"], fields.aliases))
    order = _order_by(fields, params.get("sort") or fields.default_sort)
    if not order:
        order = _order_by(fields, fields.default_sort)
    if fields.pk is not None:
        order.append(fields.pk.desc())
    return query.order_by(*order)
