"""CVAT's LabeledData as plain objects, and their JSON exactly as CVAT renders it.

A job's annotations are tags (whole-frame labels), shapes (one figure on one frame; a
skeleton shape owns ``elements``, one sub-shape per point of the skeleton) and tracks (an
object followed over frames: keyframe ``shapes``, and ``elements`` for skeletons).
Frames are task-relative numbers everywhere.  ``id`` is ``None`` until the store assigns
one.

The JSON follows CVAT's ``Labeled*SerializerFromDB`` field order; ``elements`` appear on
top-level shapes and tracks only (never on their elements), ``score`` on shapes only,
and LabeledData carries ``intervals`` (audio; always empty here) because the 2.80 SDK
knows the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SHAPE_TYPES: tuple[str, ...] = (
    "rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton",
)
#: CVAT's ``SourceType``.
SOURCES: tuple[str, ...] = ("auto", "semi-auto", "manual", "file", "consensus")


@dataclass(slots=True)
class AttributeValue:
    spec_id: int
    value: str


@dataclass(slots=True)
class Tag:
    label_id: int
    frame: int
    id: int | None = None
    group: int = 0
    source: str = "manual"
    attributes: list[AttributeValue] = field(default_factory=list)


@dataclass(slots=True)
class Shape:
    type: str
    label_id: int
    frame: int
    id: int | None = None
    group: int = 0
    source: str = "manual"
    occluded: bool = False
    outside: bool = False
    z_order: int = 0
    rotation: float = 0.0
    points: list[float] = field(default_factory=list)
    score: float = 1.0
    attributes: list[AttributeValue] = field(default_factory=list)
    #: Skeleton elements (top-level shapes only).
    elements: list[Shape] = field(default_factory=list)


@dataclass(slots=True)
class TrackedShape:
    """One keyframe of a track."""

    type: str
    frame: int
    id: int | None = None
    occluded: bool = False
    outside: bool = False
    z_order: int = 0
    rotation: float = 0.0
    points: list[float] = field(default_factory=list)
    attributes: list[AttributeValue] = field(default_factory=list)
    #: Interpolated state stored only because a task-level track was cut at a job's
    #: border (see ``tracks.slice_track``); the task view leaves it out.  Not rendered.
    synthetic: bool = False


@dataclass(slots=True)
class Track:
    label_id: int
    frame: int
    id: int | None = None
    group: int = 0
    source: str = "manual"
    attributes: list[AttributeValue] = field(default_factory=list)
    shapes: list[TrackedShape] = field(default_factory=list)
    #: Skeleton element tracks (top-level tracks only).
    elements: list[Track] = field(default_factory=list)
    #: Id of the track in an earlier job this one continues (a task-level track cut at
    #: a job's border); the task view joins them.  Not rendered.
    continues_id: int | None = None
    #: While distributing a task-level write: the piece this one continues, whose id is
    #: known only once it is stored.
    continues: Track | None = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class LabeledData:
    version: int = 0
    tags: list[Tag] = field(default_factory=list)
    shapes: list[Shape] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.tags or self.shapes or self.tracks)


# Identity without ids: two objects with equal keys are the same annotation --------------


def _attributes_key(attributes: list[AttributeValue]) -> tuple[tuple[int, str], ...]:
    return tuple(sorted((a.spec_id, a.value) for a in attributes))


def tag_key(tag: Tag) -> tuple[Any, ...]:
    return (tag.label_id, tag.frame, tag.group, tag.source, _attributes_key(tag.attributes))


def shape_key(shape: Shape) -> tuple[Any, ...]:
    return (
        shape.type, shape.label_id, shape.frame, shape.group, shape.source, shape.occluded,
        shape.outside, shape.z_order, shape.rotation, tuple(shape.points), shape.score,
        _attributes_key(shape.attributes),
        tuple(sorted((shape_key(e) for e in shape.elements), key=repr)),
    )


def tracked_shape_key(shape: TrackedShape) -> tuple[Any, ...]:
    """The keyframe's content, frame included."""
    return (
        shape.type, shape.frame, shape.occluded, shape.outside, shape.z_order, shape.rotation,
        tuple(shape.points), _attributes_key(shape.attributes),
    )


def track_key(track: Track) -> tuple[Any, ...]:
    return (
        track.label_id, track.frame, track.group, track.source,
        _attributes_key(track.attributes),
        tuple(sorted(tracked_shape_key(s) for s in track.shapes)),
        tuple(sorted((track_key(e) for e in track.elements), key=repr)),
    )


# JSON -----------------------------------------------------------------------------------


def attributes_json(attributes: list[AttributeValue]) -> list[dict[str, Any]]:
    return [{"spec_id": a.spec_id, "value": a.value} for a in attributes]


def tag_json(tag: Tag) -> dict[str, Any]:
    return {
        "id": tag.id,
        "label_id": tag.label_id,
        "frame": tag.frame,
        "group": tag.group,
        "source": tag.source,
        "attributes": attributes_json(tag.attributes),
    }


def shape_json(shape: Shape, *, top: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": shape.id,
        "label_id": shape.label_id,
        "type": shape.type,
        "frame": shape.frame,
        "group": shape.group,
        "source": shape.source,
        "occluded": shape.occluded,
        "outside": shape.outside,
        "z_order": shape.z_order,
        "rotation": shape.rotation,
        "points": list(shape.points),
        "score": shape.score,
        "attributes": attributes_json(shape.attributes),
    }
    if top:
        out["elements"] = [shape_json(e, top=False) for e in shape.elements]
    return out


def tracked_shape_json(shape: TrackedShape) -> dict[str, Any]:
    return {
        "id": shape.id,
        "type": shape.type,
        "frame": shape.frame,
        "occluded": shape.occluded,
        "outside": shape.outside,
        "z_order": shape.z_order,
        "rotation": shape.rotation,
        "points": list(shape.points),
        "attributes": attributes_json(shape.attributes),
    }


def track_json(track: Track, *, top: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": track.id,
        "label_id": track.label_id,
        "frame": track.frame,
        "group": track.group,
        "source": track.source,
        "shapes": [tracked_shape_json(s) for s in sorted(track.shapes, key=_by_frame)],
        "attributes": attributes_json(track.attributes),
    }
    if top:
        out["elements"] = [track_json(e, top=False) for e in track.elements]
    return out


def _by_frame(shape: TrackedShape) -> tuple[int, int]:
    return shape.frame, shape.id or 0


def data_json(data: LabeledData) -> dict[str, Any]:
    return {
        "version": data.version,
        "tags": [tag_json(t) for t in data.tags],
        "shapes": [shape_json(s) for s in data.shapes],
        "tracks": [track_json(t) for t in data.tracks],
        "intervals": [],
    }
