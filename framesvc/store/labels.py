"""Task labels: creation with CVAT's defaults, PATCH-style updates, and the queries lists need.

A label row keeps its attribute specs as a JSON list (``id``, ``name``, ``mutable``,
``input_type``, ``default_value``, ``values``).  Attribute ids must be stable and unique
across the service because annotations refer to them as ``spec_id``; they are allocated
from a block reserved per label (``label_id * ATTRIBUTE_ID_BLOCK + n``), which needs no
extra table and never collides between labels.

Skeleton labels have sublabels (rows with ``parent_id``); their SVG names sublabels by
``data-label-name`` on input and is rewritten to ``data-label-id`` once ids exist, as
CVAT does.  Lists show top-level labels only; sublabels are nested in their parent.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.store.locks import lock_task
from framesvc.store.schema import labels

#: Attribute ids of label L are L*ATTRIBUTE_ID_BLOCK .. L*ATTRIBUTE_ID_BLOCK+BLOCK-1.
ATTRIBUTE_ID_BLOCK = 1024

LABEL_TYPES = (
    "any", "cuboid", "ellipse", "mask", "points", "polygon", "polyline", "rectangle",
    "skeleton", "tag", "interval",
)
INPUT_TYPES = ("checkbox", "radio", "number", "text", "select")


class LabelError(ValueError):
    """A label request that CVAT answers with 400 ``["message"]``."""


class LabelNotFound(LookupError):
    """A label or attribute id that does not belong to the task (CVAT: 404)."""


@dataclass
class AttributeInput:
    """One validated attribute spec of a request; None means "not given"."""

    id: int | None = None
    name: str | None = None
    mutable: bool | None = None
    input_type: str | None = None
    default_value: str | None = None
    values: list[str] | None = None
    deleted: bool = False


@dataclass
class LabelInput:
    """One validated label of a request; None means "not given"."""

    id: int | None = None
    name: str | None = None
    color: str | None = None
    type: str | None = None
    svg: str | None = None
    attributes: list[AttributeInput] = field(default_factory=list)
    sublabels: list[LabelInput] = field(default_factory=list)
    deleted: bool = False


# Colors ---------------------------------------------------------------------------------


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


def label_color(name: str, used: Iterable[str]) -> str:
    """A color for a new label: derived from its name, and not one already in the task.

    Hues walk the golden-ratio sequence from a start given by a hash of the name, so a
    label called "car" gets the same color in every task unless that color is taken.
    ``used`` may be a set of lower-case colors kept by the caller (no copy is made then,
    so creating n labels stays O(n)).
    """
    taken = used if isinstance(used, set | frozenset) else {c.lower() for c in used if c}
    digest = hashlib.blake2s(name.strip().lower().encode(), digest_size=4).digest()
    start = int.from_bytes(digest, "big") / 2**32
    for step in range(256):
        hue = (start + step * 0.618033988749895) % 1.0
        saturation = (0.55, 0.75, 0.9)[step // 64 % 3] if step < 192 else 0.4
        value = (0.95, 0.8, 0.65)[step // 64 % 3] if step < 192 else 0.9
        color = _hex(colorsys.hsv_to_rgb(hue, saturation, value))
        if color not in taken:
            return color
    return _hex(colorsys.hsv_to_rgb(start, 0.7, 0.9))


# Attributes -----------------------------------------------------------------------------


def _attribute_json(attr_id: int, spec: AttributeInput) -> dict[str, Any]:
    return {
        "id": attr_id,
        "name": spec.name,
        "mutable": bool(spec.mutable),
        "input_type": spec.input_type,
        "default_value": spec.default_value or "",
        "values": list(spec.values or []),
    }


def _check_attribute_names(specs: Sequence[AttributeInput]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.name is None:
            continue
        if spec.name in seen:
            raise LabelError(f"Duplicate attribute with name '{spec.name}' exists")
        seen.add(spec.name)


def _next_attribute_id(label_id: int, existing: Sequence[dict[str, Any]]) -> int:
    base = label_id * ATTRIBUTE_ID_BLOCK
    used = [a["id"] for a in existing if base <= a.get("id", -1) < base + ATTRIBUTE_ID_BLOCK]
    next_id = (max(used) + 1) if used else base
    if next_id >= base + ATTRIBUTE_ID_BLOCK:
        raise LabelError(f"A label can have at most {ATTRIBUTE_ID_BLOCK} attributes")
    return next_id


def _new_attributes(label_id: int, specs: Sequence[AttributeInput]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for spec in specs:
        if spec.deleted:
            continue
        _require_attribute_fields(spec)
        out.append(_attribute_json(_next_attribute_id(label_id, out), spec))
    return out


def _require_attribute_fields(spec: AttributeInput) -> None:
    missing = [
        name for name in ("name", "mutable", "input_type", "values")
        if getattr(spec, name) is None
    ]
    if missing:
        raise LabelError(
            f"Attribute '{spec.name or ''}' needs the fields: {', '.join(missing)}"
        )


def _update_attributes(
    label_id: int, current: list[dict[str, Any]], specs: Sequence[AttributeInput]
) -> list[dict[str, Any]]:
    """CVAT's rules: by id (404 if foreign), else by name (update or create)."""
    result = [dict(a) for a in current]
    for spec in specs:
        if spec.id is not None:
            matches = [a for a in result if a["id"] == spec.id]
            if not matches:
                raise LabelNotFound(f"Attribute with id #{spec.id} does not exist")
            target = matches[0]
        else:
            named = [a for a in result if a["name"] == spec.name]
            if not named:
                if spec.deleted:
                    continue
                _require_attribute_fields(spec)
                result.append(_attribute_json(_next_attribute_id(label_id, result), spec))
                continue
            target = named[0]
        if spec.deleted:
            result.remove(target)
            continue
        for key in ("name", "mutable", "input_type", "default_value", "values"):
            value = getattr(spec, key)
            if value is not None:
                target[key] = list(value) if key == "values" else value
        if any(a is not target and a["name"] == target["name"] for a in result):
            raise LabelError(f"Duplicate attribute with name '{target['name']}' exists")
    return result


# Labels ---------------------------------------------------------------------------------


#: Labels (with their sublabels) one request may create or change.  Each is a row written
#: while the task's lock and the database's write lock are held, so the bound is what
#: keeps one request from stalling every other writer; LVIS-sized ontologies (~1200
#: classes) fit with room to spare.
MAX_LABELS_PER_REQUEST = 2000


def _count_labels(specs: Sequence[LabelInput]) -> int:
    return sum(1 + _count_labels(spec.sublabels or []) for spec in specs)


def _check_batch_size(specs: Sequence[LabelInput]) -> None:
    if _count_labels(specs) > MAX_LABELS_PER_REQUEST:
        raise LabelError(
            f"At most {MAX_LABELS_PER_REQUEST} labels can be created or changed at once"
        )


async def _sibling_rows(
    conn: AsyncConnection, task_id: int, parent_id: int | None
) -> list[sa.Row[Any]]:
    parent_clause = (
        labels.c.parent_id.is_(None) if parent_id is None else labels.c.parent_id == parent_id
    )
    return list(
        (await conn.execute(
            sa.select(labels).where(labels.c.task_id == task_id, parent_clause)
        )).all()
    )


async def _task_colors(conn: AsyncConnection, task_id: int) -> list[str]:
    rows = await conn.execute(sa.select(labels.c.color).where(labels.c.task_id == task_id))
    return [r.color for r in rows]


def _rewrite_svg(svg: str, sublabels: Sequence[tuple[str, int]]) -> str:
    for name, sub_id in sublabels:
        svg = svg.replace(f'data-label-name="{name}"', f'data-label-id="{sub_id}"')
    return svg


async def create_labels(
    conn: AsyncConnection,
    task_id: int,
    specs: Sequence[LabelInput],
    *,
    parent_id: int | None = None,
) -> list[int]:
    """Insert new labels (and their sublabels) of ``task_id``; their ids, in order.

    Names must be unique among siblings (top-level labels of the task, or the sublabels
    of one skeleton); a missing color is chosen by :func:`label_color`.
    """
    if parent_id is None:
        _check_batch_size(specs)
    names = {r.name for r in await _sibling_rows(conn, task_id, parent_id)}
    colors = {c.lower() for c in await _task_colors(conn, task_id) if c}
    created: list[int] = []
    for spec in specs:
        if spec.name is None:
            raise LabelError("Label name is required")
        if spec.name in names:
            raise LabelError("All label names must be unique")
        names.add(spec.name)
        _check_attribute_names(spec.attributes)
        color = spec.color or label_color(spec.name, colors)
        colors.add(color.lower())
        label_type = spec.type or "any"
        label_id = (
            await conn.execute(
                labels.insert().values(
                    task_id=task_id,
                    parent_id=parent_id,
                    name=spec.name,
                    color=color,
                    type=label_type,
                    svg="",
                    attributes=[],
                )
            )
        ).inserted_primary_key[0]
        values: dict[str, Any] = {"attributes": _new_attributes(label_id, spec.attributes)}
        if spec.sublabels:
            sub_ids = await create_labels(conn, task_id, spec.sublabels, parent_id=label_id)
            colors = {c.lower() for c in await _task_colors(conn, task_id) if c}
            if label_type == "skeleton":
                pairs = [(s.name or "", i) for s, i in zip(spec.sublabels, sub_ids, strict=True)]
                values["svg"] = _rewrite_svg(spec.svg or "", pairs)
        await conn.execute(labels.update().where(labels.c.id == label_id).values(**values))
        created.append(label_id)
    return created


async def update_labels(
    conn: AsyncConnection, task_id: int, specs: Sequence[LabelInput]
) -> None:
    """Apply a task PATCH's ``labels``: new ones are created, ``id`` ones updated or deleted.

    Raises :class:`LabelNotFound` for an id that is not a top-level label of the task
    and :class:`LabelError` for a request CVAT rejects with 400.  Takes the task's lock
    first (``store/locks.py``): deleting a label deletes annotations drawn with it.
    """
    _check_batch_size(specs)
    await lock_task(conn, task_id)
    pending: list[LabelInput] = []  # consecutive new labels, created in one batch
    for spec in specs:
        if spec.id is None:
            if spec.deleted:
                raise LabelError("Deleted label must have an ID")
            pending.append(spec)
            continue
        if pending:
            await create_labels(conn, task_id, pending)
            pending = []
        row = (
            await conn.execute(
                sa.select(labels).where(labels.c.id == spec.id, labels.c.task_id == task_id)
            )
        ).first()
        if row is None:
            raise LabelNotFound(f"Not found label with id #{spec.id} to change")
        if spec.deleted:
            await conn.execute(labels.delete().where(labels.c.id == row.id))
            continue
        values: dict[str, Any] = {}
        if spec.name is not None and spec.name != row.name:
            siblings = await _sibling_rows(conn, task_id, row.parent_id)
            if any(s.name == spec.name and s.id != row.id for s in siblings):
                raise LabelError("All label names must be unique")
            values["name"] = spec.name
        # Changing a type from or to "skeleton" is refused silently, as in CVAT.
        if spec.type is not None and "skeleton" not in (spec.type, row.type):
            values["type"] = spec.type
        if spec.color:
            values["color"] = spec.color
        if spec.attributes:
            _check_attribute_names([a for a in spec.attributes if a.id is None])
            values["attributes"] = _update_attributes(row.id, list(row.attributes),
                                                      spec.attributes)
        if values:
            await conn.execute(labels.update().where(labels.c.id == row.id).values(**values))
    if pending:
        await create_labels(conn, task_id, pending)


async def remove_label(conn: AsyncConnection, task_id: int, label_id: int) -> None:
    """Delete a label of the task (its sublabels and annotations go by cascade), after
    taking the task's lock (``store/locks.py``)."""
    await lock_task(conn, task_id)
    await conn.execute(labels.delete().where(labels.c.id == label_id, labels.c.task_id == task_id))


async def get_label(conn: AsyncConnection, label_id: int) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(labels).where(labels.c.id == label_id))).first()


async def sublabels_of(
    conn: AsyncConnection, parent_ids: Iterable[int]
) -> dict[int, list[sa.Row[Any]]]:
    """Sublabel rows grouped by parent id (one query for a whole page of labels)."""
    wanted = sorted(set(parent_ids))
    out: dict[int, list[sa.Row[Any]]] = {i: [] for i in wanted}
    if not wanted:
        return out
    rows = await conn.execute(
        sa.select(labels).where(labels.c.parent_id.in_(wanted)).order_by(labels.c.id)
    )
    for row in rows:
        out[row.parent_id].append(row)
    return out


async def label_counts(conn: AsyncConnection, task_ids: Iterable[int]) -> dict[int, int]:
    """Top-level label count per task."""
    wanted = sorted(set(task_ids))
    if not wanted:
        return {}
    rows = await conn.execute(
        sa.select(labels.c.task_id, sa.func.count())
        .where(labels.c.task_id.in_(wanted), labels.c.parent_id.is_(None))
        .group_by(labels.c.task_id)
    )
    counts = dict.fromkeys(wanted, 0)
    counts.update({r[0]: r[1] for r in rows})
    return counts
