"""Request JSON -> LabeledData, with the checks and messages of CVAT's serializers.

CVAT validates annotation input with DRF serializers (``LabeledDataSerializer`` and its
children in ``cvat/apps/engine/serializers.py``); a bad request gets 400 with DRF's
nested error body, e.g. ``{"shapes": [{}, {"points": ["invalid length for shape type
'rectangle'"]}]}``.  This module reproduces those fields, defaults and messages:

* ``id``: depends on the action, as CVAT's ``AnnotationSerializer.validate_id``: for
  ``create`` (and PUT, which CVAT validates as a create) it "must be absent", for
  ``delete`` it "must be present and not null", for ``update`` anything goes (an object
  without an id is created).  Tracked shapes' ids are never checked (CVAT does not).
* point counts per shape type (``ShapeSerializer.validate``) and skeleton elements
  (``LabeledShapeSerializer.validate``);
* ``rotation`` 0..360, ``score`` 0..1 (default 1), ``frame``/``label_id``/``group``
  >= 0, ``group`` null -> 0, attribute values turned into strings with ``str()``.

Deliberately stricter than CVAT (whose model would store anything): ``source`` must be
one of CVAT's source types, and numbers must be finite (NaN/Infinity would make the
stored data unrenderable as JSON).  Output-only keys (``intervals``, ``version``, ...)
are accepted and ignored, so objects taken from a GET can be sent back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from framesvc.annotations.model import (
    SHAPE_TYPES,
    SOURCES,
    AttributeValue,
    LabeledData,
    Shape,
    Tag,
    Track,
    TrackedShape,
)
from framesvc.http.serializers import (
    Fields,
    Invalid,
    bool_field,
    char_field,
    choice_field,
    int_field,
    list_field,
    nested_list,
)
from framesvc.store.schema import INT32_MAX, INT32_MIN

ACTIONS = ("create", "update", "delete")

MUST_BE_ABSENT = "must be absent"
MUST_BE_PRESENT = "must be present and not null"
INVALID_NUMBER = "A valid number is required."
INVALID_POINT = "Value must be a float or an integer"


def float_field(value: Any, *, min_value: float | None = None,
                max_value: float | None = None) -> float:
    """DRF ``FloatField`` (``float(value)``), refusing NaN and infinities."""
    if value is None:
        raise Invalid(["This field may not be null."])
    if isinstance(value, str) and len(value) > 1000:
        raise Invalid(["String value too large."])
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise Invalid([INVALID_NUMBER]) from None
    if not math.isfinite(number):
        raise Invalid([INVALID_NUMBER])
    if min_value is not None and number < min_value:
        raise Invalid([f"Ensure this value is greater than or equal to {min_value}."])
    if max_value is not None and number > max_value:
        raise Invalid([f"Ensure this value is less than or equal to {max_value}."])
    return number


def points_field(value: Any) -> list[float]:
    """CVAT's ``OptimizedFloatListField``: a list of JSON numbers, errors by index."""
    items = list_field(value)
    errors: dict[str, list[str]] = {}
    for index, item in enumerate(items):
        if type(item) not in (int, float) or not math.isfinite(item):
            errors[str(index)] = [INVALID_POINT]
    if errors:
        raise Invalid(errors)
    return [float(item) for item in items]


def _attribute(payload: Any) -> AttributeValue:
    f = Fields(payload)
    spec_id = f.get("spec_id", int_field, required=True)
    # CVAT's AttributeValSerializer.to_internal_value: ``data['value'] = str(data['value'])``
    # before the CharField(max_length=4096, allow_blank=True) runs.
    value = f.get("value", lambda v: char_field(str(v), max_length=4096, allow_blank=True),
                  required=True)
    f.check()
    return AttributeValue(spec_id=spec_id, value=value)


def _attributes(value: Any) -> list[AttributeValue]:
    return nested_list(value, _attribute)


def _source(value: Any) -> str:
    text = char_field(value)
    assert text is not None
    if text not in SOURCES:
        raise Invalid([f'"{text}" is not a valid choice.'])
    return text


def _group(value: Any) -> int:
    return int_field(value, min_value=0, max_value=INT32_MAX, allow_null=True) or 0


def _z_order(value: Any) -> int:
    # Stored in a 32-bit column (store/schema.py); PostgreSQL would refuse a larger value.
    number = int_field(value, min_value=INT32_MIN, max_value=INT32_MAX)
    assert number is not None
    return number


class _Parser:
    """Parses one LabeledData body for one action."""

    def __init__(self, action: str) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown annotation action {action!r}")
        self.action = action

    # Fields shared by tags, shapes and tracks (CVAT's AnnotationSerializer).

    def _id(self, f: Fields) -> int | None:
        value = f.get("id", lambda v: int_field(v, allow_null=True))
        if "id" in f.errors:
            return None
        if self.action == "create" and value is not None:
            f.errors["id"] = [MUST_BE_ABSENT]
        elif self.action == "delete" and value is None:
            f.errors["id"] = [MUST_BE_PRESENT]
        return value

    def _common(self, f: Fields) -> dict[str, Any]:
        return {
            "id": self._id(f),
            "frame": f.get("frame", lambda v: int_field(v, min_value=0), required=True),
            "label_id": f.get("label_id", lambda v: int_field(v, min_value=0), required=True),
            "group": f.get("group", _group, default=0),
            "source": f.get("source", _source, default="manual"),
            "attributes": f.get("attributes", _attributes, default=[]),
        }

    @staticmethod
    def _geometry(f: Fields) -> dict[str, Any]:
        """CVAT's ShapeSerializer fields."""
        return {
            "type": f.get("type", lambda v: choice_field(v, SHAPE_TYPES), required=True),
            "occluded": f.get("occluded", bool_field, default=False),
            "outside": f.get("outside", bool_field, default=False),
            "z_order": f.get("z_order", _z_order, default=0),
            "rotation": f.get("rotation", lambda v: float_field(v, min_value=0, max_value=360),
                              default=0.0),
            "points": f.get("points", points_field, default=[]),
        }

    @staticmethod
    def _check_points(f: Fields, shape_type: str, points: list[float]) -> None:
        """``ShapeSerializer.validate``: runs only when every field was valid."""
        if f.errors:
            return
        n = len(points)
        ok = {
            "rectangle": n == 4,
            "ellipse": n == 4,
            "polygon": n >= 6 and n % 2 == 0,
            "polyline": n >= 4 and n % 2 == 0,
            "points": n >= 2 and n % 2 == 0,
            "cuboid": n == 16,
            "mask": n >= 5,
            "skeleton": n == 0,
        }[shape_type]
        if not ok:
            raise Invalid({"points": [f"invalid length for shape type '{shape_type}'"]})

    def tag(self, payload: Any) -> Tag:
        f = Fields(payload)
        common = self._common(f)
        f.check()
        return Tag(**common)

    def shape(self, payload: Any, *, top: bool = True) -> Shape:
        f = Fields(payload)
        common = self._common(f)
        geometry = self._geometry(f)
        score = f.get("score", lambda v: float_field(v, min_value=0, max_value=1), default=1.0)
        elements: list[Shape] = []
        if top:
            elements = f.get("elements", lambda v: nested_list(
                v, lambda e: self.shape(e, top=False)), default=[])
        f.check()
        self._check_points(f, geometry["type"], geometry["points"])
        if top:
            if geometry["type"] == "skeleton" and not elements:
                raise Invalid({"elements": ["at least one required for skeleton shape"]})
            if geometry["type"] != "skeleton" and elements:
                raise Invalid({"elements": ["not allowed for non-skeleton shape"]})
        return Shape(**common, **geometry, score=score, elements=elements)

    def tracked_shape(self, payload: Any) -> TrackedShape:
        f = Fields(payload)
        geometry = self._geometry(f)
        shape_id = f.get("id", lambda v: int_field(v, allow_null=True))
        frame = f.get("frame", lambda v: int_field(v, min_value=0), required=True)
        attributes = f.get("attributes", _attributes, default=[])
        f.check()
        self._check_points(f, geometry["type"], geometry["points"])
        return TrackedShape(**geometry, id=shape_id, frame=frame, attributes=attributes)

    def track(self, payload: Any, *, top: bool = True) -> Track:
        f = Fields(payload)
        common = self._common(f)
        shapes = f.get("shapes", lambda v: nested_list(v, self.tracked_shape), required=True,
                       default=[])
        elements: list[Track] = []
        if top:
            elements = f.get("elements", lambda v: nested_list(
                v, lambda e: self.track(e, top=False)), default=[])
        f.check()
        return Track(**common, shapes=shapes, elements=elements)

    def data(self, payload: Any) -> LabeledData:
        f = Fields(payload)

        def many(parse: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
            def run(value: Any) -> list[Any]:
                if not isinstance(value, list) and value is not None:
                    kind = type(value).__name__
                    raise Invalid({"non_field_errors": [
                        f'Expected a list of items but got type "{kind}".']})
                return nested_list(value, parse)
            return run

        f.get("version", int_field, default=0)
        tags = f.get("tags", many(self.tag), default=[])
        shapes = f.get("shapes", many(self.shape), default=[])
        tracks = f.get("tracks", many(self.track), default=[])
        f.check()
        return LabeledData(tags=tags, shapes=shapes, tracks=tracks)


def parse_labeled_data(payload: Any, action: str) -> LabeledData:
    """Parse a LabeledData request body; ``Invalid`` carries DRF's error body.

    ``action`` is ``create`` (POST-like writes and PUT), ``update`` or ``delete``.
    """
    return _Parser(action).data(payload)
