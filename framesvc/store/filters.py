"""CVAT's JSON-Logic ``filter`` parameter, translated to one SQL WHERE clause.

This is the only JSON-Logic translator in framesvc: every list endpoint (users, tasks,
jobs, labels) reaches it through :func:`framesvc.store.listing.apply_list_query`, so the
database does the filtering and pagination counts stay exact.

The language is CVAT's (``cvat/apps/engine/filters.py``, ``JsonLogicFilter``), which is
what cvat-sdk 2.80 generates from ``list(id__in=..., x__gt=...)``:

* ``and`` / ``or`` over a non-empty list of rules; ``!`` negates, ``!!`` is the identity
  (both accept the rule bare or as a one-element list);
* ``{"var": f}`` alone means "``f`` is set" (``IS NOT NULL``);
* ``==``, ``<``, ``<=``, ``>``, ``>=`` between a variable and a value (either order);
  ``==`` with ``null`` means ``IS NULL``;
* ``in``: ``[{"var": f}, [values]]`` is membership, ``["text", {"var": f}]`` is a
  case-insensitive substring test;
* three-argument ``<=``: ``[low, {"var": f}, high]``, inclusive between.

Two things differ from a literal SQL translation, on purpose:

* **Two-valued logic.**  Every comparison is wrapped in ``COALESCE(..., FALSE)``, so a
  NULL field makes a comparison false and its negation true, as in CVAT (Django's
  ``~Q`` adds ``IS NULL`` alternatives) and as a reference evaluation in Python would
  say.  Plain SQL would drop such rows from both ``x`` and ``NOT x``.
* **Every bad input is a 400.**  CVAT answers some (a ``null`` in ``<``, ``!=``, a
  non-list ``and``, a non-integer id) with a 500; here they are ``["filter: ..."]``.

Values are converted to the field's Python type first (``"5"`` for an integer field is
5, an ISO date string for a date field), so ``id`` vs ``"abc"`` is a 400, not a driver
error.  Text comparisons are case-sensitive except ``in``'s substring test; on SQLite
the substring test folds only ASCII letters (SQLite's ``lower``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

#: Integers beyond 64 bits cannot be stored, so comparing with them is a 400.
MAX_INT = 2**63 - 1
#: Deeper rules are refused: they are never useful, and would otherwise hit Python's
#: recursion limit or SQLite's expression depth limit (a 500).
MAX_DEPTH = 32
#: Longest rule (in nodes) accepted; bounds the size of the generated SQL.
MAX_NODES = 2000

EMPTY = "filter shouldn't be empty"

Fields = Mapping[str, sa.ColumnElement[Any]]
#: Per field, other spellings of stored values (``{"type": {"replica": "consensus_replica"}}``).
Aliases = Mapping[str, Mapping[str, str]]


class ListQueryError(ValueError):
    """A bad list parameter; ``body`` is the CVAT-shaped 400 body."""

    def __init__(self, body: Any) -> None:
        super().__init__(body)
        self.body = body


def _error(message: str) -> ListQueryError:
    return ListQueryError([f"filter: {message}"])


def _error_plain(message: str) -> ListQueryError:
    return ListQueryError([message])


# Values -----------------------------------------------------------------------------------


def python_type(expr: sa.ColumnElement[Any]) -> type | None:
    """The Python type of an SQL expression's values, or None if SQLAlchemy has none."""
    try:
        return expr.type.python_type
    except NotImplementedError:
        return None


def _parse_datetime(raw: str) -> dt.datetime:
    """ISO-8601 (``Z`` allowed); naive values are UTC, like every date framesvc stores."""
    value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}


def coerce(expr: sa.ColumnElement[Any], value: Any) -> Any:
    """``value`` as the Python type of ``expr``; :class:`ValueError` if impossible.

    Used for query-string values (always strings) and JSON values alike; ``None``
    passes through.
    """
    if value is None:
        return None
    kind = python_type(expr)
    if kind is int:
        if isinstance(value, (bool, dict, list)):
            raise ValueError(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        number = int(value.strip()) if isinstance(value, str) else int(value)
        if not -MAX_INT - 1 <= number <= MAX_INT:
            raise ValueError(value)
        return number
    if kind is dt.datetime:
        if not isinstance(value, str):
            raise ValueError(value)
        return _parse_datetime(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(value)
    if kind is str:
        if isinstance(value, (dict, list, bool)):
            raise ValueError(value)
        if "\x00" in str(value):
            # No stored text has one (store/schema.py: String); PostgreSQL cannot compare it.
            raise ValueError(value)
        return str(value)
    return value


def _value(name: str, expr: sa.ColumnElement[Any], value: Any,
           aliases: Aliases | None = None) -> Any:
    try:
        converted = coerce(expr, value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _error(f"{json.dumps(value)} is not a valid value for '{name}'") from exc
    if aliases and isinstance(converted, str):
        return aliases.get(name, {}).get(converted, converted)
    return converted


# Translation ------------------------------------------------------------------------------


def _two_valued(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """``condition``, false where SQL would say NULL (unknown)."""
    return sa.func.coalesce(condition, sa.false(), type_=sa.Boolean)


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
#: The operator with its operands swapped: ``5 < x`` is ``x > 5``.
_MIRROR = {"==": "==", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _is_var(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and "var" in node


class _Translator:
    def __init__(self, fields: Fields, aliases: Aliases | None) -> None:
        self.fields = fields
        self.aliases = aliases
        self.nodes = 0

    def value(self, name: str, value: Any) -> Any:
        return _value(name, self.fields[name], value, self.aliases)

    def var(self, node: Any) -> str:
        name = node["var"]
        if isinstance(name, list) and len(name) == 1:
            name = name[0]  # JSON-Logic's {"var": ["x"]}
        if not isinstance(name, str):
            raise _error(f"term {json.dumps(name)} is not supported")
        if name not in self.fields:
            raise _error(f"term '{name}' is not supported")
        return name

    def rule(self, node: Any, depth: int) -> sa.ColumnElement[bool]:
        self.nodes += 1
        if depth > MAX_DEPTH:
            raise _error(f"the expression is nested deeper than {MAX_DEPTH} levels")
        if self.nodes > MAX_NODES:
            raise _error(f"the expression has more than {MAX_NODES} parts")
        if not isinstance(node, dict) or len(node) != 1:
            raise _error(f"{json.dumps(node)} is not a rule: a rule is an object with one "
                         "operator")
        op, args = next(iter(node.items()))
        if op in ("and", "or"):
            if not isinstance(args, list) or not args:
                raise _error(f"'{op}' needs a non-empty list of rules")
            parts = [self.rule(arg, depth + 1) for arg in args]
            return sa.and_(*parts) if op == "and" else sa.or_(*parts)
        if op in ("!", "!!"):
            inner = args[0] if isinstance(args, list) and len(args) == 1 else args
            clause = self.rule(inner, depth + 1)
            return sa.not_(clause) if op == "!" else clause
        if op == "var":
            name = self.var(node)
            return self.fields[name].is_not(None)
        if isinstance(args, list):
            if op in _COMPARE and len(args) == 2:
                return self.compare(op, args)
            if op == "<=" and len(args) == 3 and _is_var(args[1]):
                return self.between(args)
            if op == "in" and len(args) == 2:
                return self.contains(args)
        raise _error(f"{op} operation with {json.dumps(args)} arguments is not implemented")

    def compare(self, op: str, args: list[Any]) -> sa.ColumnElement[bool]:
        left, right = args
        if _is_var(left) and not _is_var(right):
            name, value = self.var(left), right
        elif _is_var(right) and not _is_var(left):
            name, value, op = self.var(right), left, _MIRROR[op]
        else:
            raise _error(f"'{op}' compares one variable with one value")
        expr = self.fields[name]
        converted = self.value(name, value)
        if converted is None:
            if op != "==":
                raise _error(f"'{name}' cannot be compared with null by '{op}'")
            return expr.is_(None)
        return _two_valued(_COMPARE[op](expr, converted))

    def between(self, args: list[Any]) -> sa.ColumnElement[bool]:
        name = self.var(args[1])
        expr = self.fields[name]
        low, high = self.value(name, args[0]), self.value(name, args[2])
        if low is None or high is None:
            raise _error(f"the bounds of '{name}' cannot be null")
        return _two_valued(sa.and_(expr >= low, expr <= high))

    def contains(self, args: list[Any]) -> sa.ColumnElement[bool]:
        haystack, needle = args
        if _is_var(haystack):
            name = self.var(haystack)
            if not isinstance(needle, list):
                raise _error(f"'in' needs a list of values for '{name}'")
            expr = self.fields[name]
            values = [self.value(name, v) for v in needle]
            # Like Django's __in lookup, null never matches a listed value.
            return _two_valued(expr.in_([v for v in values if v is not None]))
        if not _is_var(needle):
            raise _error("'in' needs a variable: [{\"var\": f}, [values]] or "
                         "[\"text\", {\"var\": f}]")
        name = self.var(needle)
        expr = self.fields[name]
        if python_type(expr) not in (str, int):
            raise _error(f"'{name}' does not support substring search")
        if isinstance(haystack, bool) or not isinstance(haystack, (str, int)):
            raise _error(f"'in' needs a text to look for in '{name}'")
        needle_text = str(haystack)
        if "\x00" in needle_text:
            raise _error(f"{json.dumps(needle_text)} is not a valid text to look for")
        text = sa.func.lower(sa.cast(expr, sa.String))
        return _two_valued(text.contains(needle_text.lower(), autoescape=True))


def parse_filter(raw: str) -> Any:
    """The JSON rule of a ``filter`` string (CVAT's 400s for empty or malformed text)."""
    if not raw.strip():
        raise _error_plain(EMPTY)
    try:
        rule = json.loads(raw)
    except ValueError as exc:
        raise _error(f"can't parse filter expression: {exc}") from exc
    if isinstance(rule, (dict, list, str)) and not rule:
        raise _error_plain(EMPTY)
    return rule


def translate(fields: Fields, rule: Any, aliases: Aliases | None = None
              ) -> sa.ColumnElement[bool]:
    """The WHERE clause of an already parsed rule over ``fields`` (name -> SQL)."""
    return _Translator(fields, aliases).rule(rule, 0)


def json_logic_where(fields: Fields, raw: str, aliases: Aliases | None = None
                     ) -> sa.ColumnElement[bool]:
    """The WHERE clause of a ``filter`` query parameter over ``fields``."""
    return translate(fields, parse_filter(raw), aliases)


__all__ = [
    "Aliases",
    "ListQueryError",
    "coerce",
    "json_logic_where",
    "parse_filter",
    "python_type",
    "translate",
]
