"""CVAT's list query language, translated to SQL: ``sort``, ``search``, simple filters, JSON-Logic.

Every CVAT list endpoint (``/api/tasks``, ``/api/jobs``, ``/api/labels``) accepts the same
four kinds of query parameters over a per-resource set of field names:

* ``sort=a,-b`` - comma list of fields, ``-`` for descending; the default is ``-id``.
  An unknown field is a 400 (CVAT silently ignores it; a typo then looks like a bug in
  the data, so we say so instead).
* ``search=term`` - DRF's SearchFilter: terms split on whitespace and commas; each term
  must occur (case-insensitively) in at least one of the search fields.
* ``<field>=value`` - equality on a "simple filter" field.
* ``filter=<JSON-Logic>`` - the operators CVAT supports: ``and``, ``or``, ``!``, ``!!``,
  ``var``, ``==``, ``<``, ``<=``, ``>``, ``>=``, two-argument ``in`` (membership, or
  substring when the variable is the second argument) and three-argument ``<=``
  (between).  Unknown fields and operators are 400s with CVAT's messages.

A resource describes its fields once with :class:`ListFields` (public name -> SQL
expression); :func:`apply_list_query` returns the filtered and ordered ``Select``.
Values are converted to the column's type so that ``id=abc`` is a 400, not a 500.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

#: Integers beyond 64 bits cannot be stored, so comparing with them is a 400.
MAX_INT = 2**63 - 1


class ListQueryError(ValueError):
    """A bad list parameter; ``body`` is the CVAT-shaped 400 body."""

    def __init__(self, body: Any) -> None:
        super().__init__(body)
        self.body = body


@dataclass(frozen=True)
class ListFields:
    """The public field names of one resource and the SQL behind each."""

    #: Public name -> SQL expression over the listed table (scalar subqueries allowed).
    columns: Mapping[str, sa.ColumnElement[Any]]
    #: Fields accepted by ``sort`` and by JSON-Logic ``var``.
    sortable: Sequence[str]
    #: Fields accepted as ``<field>=value`` equality filters.
    simple: Sequence[str]
    #: Fields searched by ``search``.
    search: Sequence[str]
    #: Final tie-breaker so that pages never overlap (``id`` of the listed table).
    pk: sa.ColumnElement[Any] = field(default=None)  # type: ignore[assignment]
    default_sort: str = "-id"


_SEARCH_SPLIT = re.compile(r"[\s,]+")


def _parse_datetime(raw: str) -> dt.datetime:
    """ISO-8601 (``Z`` allowed); naive values are UTC, like every date framesvc stores."""
    value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def coerce(name: str, expr: sa.ColumnElement[Any], value: Any) -> Any:
    """``value`` as the Python type of ``expr``'s column; ListQueryError if impossible."""
    python_type: type | None
    try:
        python_type = expr.type.python_type
    except NotImplementedError:
        python_type = None
    if value is None:
        return None
    try:
        if python_type is int:
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            number = int(value)
            if not -MAX_INT - 1 <= number <= MAX_INT:
                raise ValueError(value)
            return number
        if python_type is dt.datetime:
            return _parse_datetime(str(value))
        if python_type is bool:
            if isinstance(value, bool):
                return value
            lowered = str(value).lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0"):
                return False
            raise ValueError(value)
        if python_type is str:
            if isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError) as exc:
        raise ListQueryError({name: [f"Invalid value: {value!r}."]}) from exc
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
        clauses.append(expr.desc() if desc else expr.asc())
    return clauses


def _search(fields: ListFields, raw: str) -> sa.ColumnElement[bool] | None:
    terms = [t for t in _SEARCH_SPLIT.split(raw) if t]
    if not terms:
        return None
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


# JSON-Logic ---------------------------------------------------------------------------


def _var_name(fields: ListFields, arg: Any) -> str:
    if not (isinstance(arg, dict) and len(arg) == 1 and "var" in arg):
        raise ListQueryError([f"filter: {json.dumps(arg)} is not a variable"])
    name = arg["var"]
    if not isinstance(name, str) or name not in fields.sortable or name not in fields.columns:
        raise ListQueryError([f"filter: term '{name}' is not supported"])
    return name


def _compare(op: str) -> Callable[[Any, Any], sa.ColumnElement[bool]]:
    return {
        "==": lambda a, b: a == b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }[op]


def _logic(fields: ListFields, rule: Any) -> sa.ColumnElement[bool]:
    if not isinstance(rule, dict) or len(rule) != 1:
        raise ListQueryError([f"filter: can't parse filter expression: {json.dumps(rule)}"])
    op, args = next(iter(rule.items()))
    if op in ("and", "or"):
        if not isinstance(args, list) or not args:
            raise ListQueryError([f"filter: '{op}' needs a non-empty list of rules"])
        parts = [_logic(fields, arg) for arg in args]
        return sa.and_(*parts) if op == "and" else sa.or_(*parts)
    if op == "!":
        inner = args[0] if isinstance(args, list) and len(args) == 1 else args
        return sa.not_(_logic(fields, inner))
    if op == "!!":
        inner = args[0] if isinstance(args, list) and len(args) == 1 else args
        return _logic(fields, inner)
    if op == "var":
        name = _var_name(fields, rule)
        return fields.columns[name].is_not(None)
    if not isinstance(args, list):
        raise ListQueryError([f"filter: {op} operation with {json.dumps(args)} arguments "
                              "is not implemented"])
    if op in ("==", "<", ">", "<=", ">=") and len(args) == 2:
        name = _var_name(fields, args[0])
        expr = fields.columns[name]
        value = coerce(name, expr, args[1])
        if value is None:
            if op != "==":
                raise ListQueryError([f"filter: cannot compare '{name}' with null"])
            return expr.is_(None)
        return _compare(op)(expr, value)
    if op == "<=" and len(args) == 3:
        name = _var_name(fields, args[1])
        expr = fields.columns[name]
        low, high = coerce(name, expr, args[0]), coerce(name, expr, args[2])
        return sa.and_(expr >= low, expr <= high)
    if op == "in" and len(args) == 2:
        if isinstance(args[0], dict):
            name = _var_name(fields, args[0])
            expr = fields.columns[name]
            if not isinstance(args[1], list):
                raise ListQueryError([f"filter: 'in' needs a list of values for '{name}'"])
            return expr.in_([coerce(name, expr, v) for v in args[1]])
        name = _var_name(fields, args[1])
        if not isinstance(args[0], (str, int, float)) or isinstance(args[0], bool):
            raise ListQueryError([f"filter: 'in' needs a substring to look for in '{name}'"])
        return sa.func.lower(sa.cast(fields.columns[name], sa.String)).contains(
            str(args[0]).lower(), autoescape=True
        )
    raise ListQueryError([f"filter: {op} operation with {json.dumps(args)} arguments "
                          "is not implemented"])


def json_logic(fields: ListFields, raw: str) -> sa.ColumnElement[bool]:
    """The WHERE clause of a JSON-Logic ``filter`` string."""
    if not raw.strip():
        raise ListQueryError(["filter: empty filter expression"])
    try:
        rule = json.loads(raw)
    except ValueError as exc:
        raise ListQueryError([f"filter: can't parse filter expression: {exc}"]) from exc
    return _logic(fields, rule)


def apply_list_query(
    query: sa.Select[Any], fields: ListFields, params: Mapping[str, str]
) -> sa.Select[Any]:
    """``query`` narrowed by the simple filters, ``search`` and ``filter``, then ordered."""
    for name in fields.simple:
        if name in params:
            expr = fields.columns[name]
            query = query.where(expr == coerce(name, expr, params[name]))
    if params.get("search"):
        clause = _search(fields, params["search"])
        if clause is not None:
            query = query.where(clause)
    if "filter" in params:
        query = query.where(json_logic(fields, params["filter"]))
    order = _order_by(fields, params.get("sort") or fields.default_sort)
    if not order:
        order = _order_by(fields, fields.default_sort)
    if fields.pk is not None:
        order.append(fields.pk.desc())
    return query.order_by(*order)
