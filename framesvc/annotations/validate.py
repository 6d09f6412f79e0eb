"""Checks of parsed annotations against what they refer to: labels, attributes, frames.

CVAT checks labels and attributes while saving (``JobAnnotation._validate_*``) and
answers the first failure with 400 ``["label_id `7` is invalid"]`` or
``["spec_id `12` is invalid"]``; it checks tags, then shapes, then tracks.  Which
attribute specs an object may carry depends on its kind, as in CVAT: tags and shapes any
spec of their label, a track its label's immutable specs, a track's keyframes the
mutable ones.

CVAT does not check frames at all (a shape can be saved on a frame its job does not
show); framesvc does: a tag, shape or keyframe must be on a frame of the job (for a
task-level write: of the task), with one exception for tracks - an ``outside`` keyframe
right after the job's last frame, which is how a track that leaves at the job's border
ends (CVAT's own task-to-job slicing produces it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from framesvc.annotations.model import AttributeValue, LabeledData, Shape, Track


class AnnotationError(ValueError):
    """A semantic error CVAT answers with 400 ``["message"]``."""


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    id: int
    mutable: bool
    default_value: str


@dataclass(frozen=True, slots=True)
class LabelInfo:
    id: int
    parent_id: int | None
    #: Attribute specs by id, in the label's order.
    attributes: Mapping[int, AttributeSpec]

    def specs(self, kind: str) -> Iterable[AttributeSpec]:
        """``all``, ``mutable`` or ``immutable`` specs (CVAT's ``db_attributes``)."""
        for spec in self.attributes.values():
            if kind == "all" or spec.mutable == (kind == "mutable"):
                yield spec


def label_infos(rows: Iterable[tuple[int, int | None, list[dict]]]) -> dict[int, LabelInfo]:
    """LabelInfo by id from ``(id, parent_id, attributes JSON)`` of ``labels`` rows."""
    out: dict[int, LabelInfo] = {}
    for label_id, parent_id, attributes in rows:
        specs = {
            int(a["id"]): AttributeSpec(int(a["id"]), bool(a.get("mutable")),
                                        str(a.get("default_value") or ""))
            for a in attributes or []
            if isinstance(a, dict) and "id" in a
        }
        out[label_id] = LabelInfo(label_id, parent_id, specs)
    return out


@dataclass(frozen=True, slots=True)
class Scope:
    """What a write may refer to: the labels of the task and the frames of the target."""

    labels: Mapping[int, LabelInfo]
    #: Task-relative frames of the job (or of the task).
    frames: frozenset[int]
    #: "job" or "task", for messages.
    name: str = "job"

    @property
    def end(self) -> int:
        """The frame after the last one (where a track may end with an outside keyframe)."""
        return max(self.frames) + 1 if self.frames else 0


def _label(scope: Scope, label_id: int) -> LabelInfo:
    label = scope.labels.get(label_id)
    if label is None:
        raise AnnotationError(f"label_id `{label_id}` is invalid")
    return label


def _attributes(label: LabelInfo, values: Iterable[AttributeValue], kind: str) -> None:
    allowed = {spec.id for spec in label.specs(kind)}
    for value in values:
        if value.spec_id not in allowed:
            raise AnnotationError(f"spec_id `{value.spec_id}` is invalid")


def _frame(scope: Scope, frame: int, *, track_end: bool = False) -> None:
    if frame in scope.frames or (track_end and frame == scope.end):
        return
    raise AnnotationError(f"frame `{frame}` is outside the {scope.name}")


def _shape(scope: Scope, shape: Shape) -> None:
    label = _label(scope, shape.label_id)
    _attributes(label, shape.attributes, "all")
    _frame(scope, shape.frame)
    for element in shape.elements:
        _shape(scope, element)


def _track(scope: Scope, track: Track) -> None:
    label = _label(scope, track.label_id)
    _attributes(label, track.attributes, "immutable")
    for keyframe in track.shapes:
        _attributes(label, keyframe.attributes, "mutable")
    _frame(scope, track.frame)
    for keyframe in track.shapes:
        _frame(scope, keyframe.frame, track_end=keyframe.outside)
    for element in track.elements:
        _track(scope, element)


def validate_data(data: LabeledData, scope: Scope) -> None:
    """Raise AnnotationError for the first object CVAT (or framesvc) would refuse."""
    for tag in data.tags:
        label = _label(scope, tag.label_id)
        _attributes(label, tag.attributes, "all")
        _frame(scope, tag.frame)
    for shape in data.shapes:
        _shape(scope, shape)
    for track in data.tracks:
        _track(scope, track)


def extend_attributes(data: LabeledData, labels: Mapping[int, LabelInfo]) -> None:
    """What CVAT's GET adds: default values of specs an object does not set.

    Tags and shapes get every spec of their label; tracks their immutable specs; a
    track's first keyframe the mutable defaults and each later keyframe the values of
    the one before it (mutable attributes hold until changed).  Values of specs the
    label no longer has are dropped (CVAT deletes them with the spec).
    """

    def fill(values: list[AttributeValue], label_id: int,
             defaults: Iterable[AttributeValue]) -> list[AttributeValue]:
        label = labels.get(label_id)
        known = label.attributes if label is not None else {}
        kept = [v for v in values if v.spec_id in known]
        present = {v.spec_id for v in kept}
        kept.extend(AttributeValue(d.spec_id, d.value) for d in defaults
                    if d.spec_id not in present and d.spec_id in known)
        return kept

    def defaults(label_id: int, kind: str) -> list[AttributeValue]:
        label = labels.get(label_id)
        if label is None:
            return []
        return [AttributeValue(s.id, s.default_value) for s in label.specs(kind)]

    def shape(s: Shape) -> None:
        s.attributes = fill(s.attributes, s.label_id, defaults(s.label_id, "all"))
        for element in s.elements:
            shape(element)

    def track(t: Track) -> None:
        t.attributes = fill(t.attributes, t.label_id, defaults(t.label_id, "immutable"))
        previous = defaults(t.label_id, "mutable")
        for keyframe in sorted(t.shapes, key=lambda k: k.frame):
            keyframe.attributes = fill(keyframe.attributes, t.label_id, previous)
            previous = keyframe.attributes
        for element in t.elements:
            track(element)

    for tag in data.tags:
        tag.attributes = fill(tag.attributes, tag.label_id, defaults(tag.label_id, "all"))
    for s in data.shapes:
        shape(s)
    for t in data.tracks:
        track(t)
