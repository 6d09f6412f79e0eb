"""Parsing, validation, track normalisation and the task<->jobs split/merge of annotations.

Pure functions, no server: ``annotations.parse`` must answer what CVAT's serializers
answer (DRF's error bodies), ``annotations.validate`` CVAT's label/attribute messages,
and ``merge.distribute`` followed by ``merge.merge_jobs`` must give back what was written
for any task segmentation (a property test).
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framesvc.annotations.merge import JobPart, distribute, merge_jobs
from framesvc.annotations.model import (
    AttributeValue,
    LabeledData,
    Shape,
    Tag,
    Track,
    TrackedShape,
    data_json,
    shape_key,
    tag_key,
    tracked_shape_key,
)
from framesvc.annotations.parse import parse_labeled_data
from framesvc.annotations.tracks import normalize_tracks, slice_track, state_at
from framesvc.annotations.validate import (
    AnnotationError,
    Scope,
    extend_attributes,
    label_infos,
    validate_data,
)
from framesvc.http.serializers import Invalid
from framesvc.model.segments import plan_segments

RECT = {"type": "rectangle", "label_id": 1, "frame": 0, "points": [1, 2, 3, 4]}


def errors(payload: Any, action: str = "create") -> Any:
    with pytest.raises(Invalid) as info:
        parse_labeled_data(payload, action)
    return info.value.detail


# Parsing ----------------------------------------------------------------------------------


def test_defaults_of_a_minimal_shape() -> None:
    data = parse_labeled_data({"shapes": [RECT]}, "create")
    shape = data.shapes[0]
    assert (shape.id, shape.group, shape.source, shape.occluded, shape.outside) == (
        None, 0, "manual", False, False)
    assert (shape.z_order, shape.rotation, shape.score, shape.points) == (0, 0.0, 1.0,
                                                                         [1.0, 2.0, 3.0, 4.0])
    assert data.tags == [] and data.tracks == []


def test_output_objects_are_accepted_as_input() -> None:
    """Everything a GET renders parses back (ids aside), unknown keys ignored."""
    shape = Shape(type="skeleton", label_id=1, frame=2, id=7, group=3, source="auto",
                  attributes=[AttributeValue(5, "x")],
                  elements=[Shape(type="points", label_id=2, frame=2, id=8, points=[1, 2])])
    track = Track(label_id=1, frame=0, id=9, shapes=[
        TrackedShape(type="rectangle", frame=0, id=10, points=[0, 0, 1, 1])])
    body = data_json(LabeledData(version=4, tags=[Tag(label_id=1, frame=0, id=11)],
                                 shapes=[shape], tracks=[track]))
    body["shapes"][0]["extra"] = "ignored"
    parsed = parse_labeled_data(body, "update")
    assert data_json(parsed)["shapes"] == data_json(LabeledData(shapes=[shape]))["shapes"]
    assert parsed.tracks[0].shapes[0].id == 10
    assert parsed.tags[0].id == 11


@pytest.mark.parametrize(("shape_type", "good", "bad"), [
    ("rectangle", [4], [0, 2, 6]),
    ("ellipse", [4], [2, 8]),
    ("polygon", [6, 8, 20], [4, 7]),
    ("polyline", [4, 6], [2, 5]),
    ("points", [2, 4, 6], [0, 3]),
    ("cuboid", [16], [8, 14, 18]),
    ("mask", [5, 6, 100], [0, 4]),
])
def test_point_counts_per_type(shape_type: str, good: list[int], bad: list[int]) -> None:
    for n in good:
        shape = {"type": shape_type, "label_id": 1, "frame": 0, "points": [1.0] * n}
        assert parse_labeled_data({"shapes": [shape]}, "create").shapes[0].type == shape_type
    for n in bad:
        shape = {"type": shape_type, "label_id": 1, "frame": 0, "points": [1.0] * n}
        assert errors({"shapes": [shape]}) == {
            "shapes": [{"points": [f"invalid length for shape type '{shape_type}'"]}]}


def test_skeletons_need_elements_and_no_points() -> None:
    element = {"type": "points", "label_id": 2, "frame": 0, "points": [1, 1]}
    skeleton = {"type": "skeleton", "label_id": 1, "frame": 0}
    assert errors({"shapes": [skeleton]}) == {
        "shapes": [{"elements": ["at least one required for skeleton shape"]}]}
    assert errors({"shapes": [dict(skeleton, points=[1, 2])]}) == {
        "shapes": [{"points": ["invalid length for shape type 'skeleton'"]}]}
    assert errors({"shapes": [dict(RECT, elements=[element])]}) == {
        "shapes": [{"elements": ["not allowed for non-skeleton shape"]}]}
    parsed = parse_labeled_data({"shapes": [dict(skeleton, elements=[element])]}, "create")
    assert parsed.shapes[0].elements[0].points == [1.0, 1.0]


def test_field_errors_in_drf_shape() -> None:
    bad = dict(RECT, type="circle", rotation=361, frame=-1, group=-2, source="robot",
               occluded="maybe", points=[1, "2", None, 4], score=1.5)
    assert errors({"shapes": [RECT, bad]}) == {"shapes": [{}, {
        "type": ['"circle" is not a valid choice.'],
        "rotation": ["Ensure this value is less than or equal to 360."],
        "frame": ["Ensure this value is greater than or equal to 0."],
        "group": ["Ensure this value is greater than or equal to 0."],
        "source": ['"robot" is not a valid choice.'],
        "occluded": ["Must be a valid boolean."],
        "points": {"1": ["Value must be a float or an integer"],
                   "2": ["Value must be a float or an integer"]},
        "score": ["Ensure this value is less than or equal to 1."],
    }]}
    assert errors({"shapes": [{"points": []}]}) == {"shapes": [{
        "type": ["This field is required."], "frame": ["This field is required."],
        "label_id": ["This field is required."]}]}
    assert errors({"shapes": [dict(RECT, rotation=-0.5, score=-1)]}) == {"shapes": [{
        "rotation": ["Ensure this value is greater than or equal to 0."],
        "score": ["Ensure this value is greater than or equal to 0."]}]}


def test_non_finite_numbers_are_refused() -> None:
    assert errors({"shapes": [dict(RECT, rotation=float("nan"))]}) == {
        "shapes": [{"rotation": ["A valid number is required."]}]}
    assert errors({"shapes": [dict(RECT, points=[1, 2, float("inf"), 4])]}) == {
        "shapes": [{"points": {"2": ["Value must be a float or an integer"]}}]}


def test_container_errors() -> None:
    assert errors([]) == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}
    assert errors({"shapes": {}}) == {
        "shapes": {"non_field_errors": ['Expected a list of items but got type "dict".']}}
    assert errors({"tags": None}) == {"tags": ["This field may not be null."]}
    assert errors({"tags": ["x"]}) == {
        "tags": [{"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}]}
    assert errors({"tracks": [{"label_id": 1, "frame": 0}]}) == {
        "tracks": [{"shapes": ["This field is required."]}]}


def test_ids_depend_on_the_action() -> None:
    with_id = dict(RECT, id=5)
    assert errors({"shapes": [with_id]}, "create") == {"shapes": [{"id": ["must be absent"]}]}
    assert errors({"tags": [{"label_id": 1, "frame": 0}]}, "delete") == {
        "tags": [{"id": ["must be present and not null"]}]}
    assert parse_labeled_data({"shapes": [with_id, RECT]}, "update").shapes[1].id is None
    assert parse_labeled_data({"shapes": [with_id]}, "delete").shapes[0].id == 5
    # Elements are annotations too; keyframes are not checked (as in CVAT).
    skeleton = {"type": "skeleton", "label_id": 1, "frame": 0, "elements": [
        {"type": "points", "label_id": 2, "frame": 0, "points": [1, 1], "id": 3}]}
    assert errors({"shapes": [skeleton]}, "create") == {
        "shapes": [{"elements": [{"id": ["must be absent"]}]}]}
    track = {"label_id": 1, "frame": 0, "shapes": [
        {"type": "rectangle", "frame": 0, "points": [0, 0, 1, 1], "id": 4}]}
    assert parse_labeled_data({"tracks": [track]}, "create").tracks[0].shapes[0].id == 4


def test_attribute_values_become_strings() -> None:
    tag = {"label_id": 1, "frame": 0, "attributes": [
        {"spec_id": 1, "value": 5}, {"spec_id": 2, "value": True},
        {"spec_id": 3, "value": "  padded "}]}
    values = [a.value for a in parse_labeled_data({"tags": [tag]}, "create").tags[0].attributes]
    assert values == ["5", "True", "padded"]
    assert errors({"tags": [{"label_id": 1, "frame": 0, "attributes": [{"spec_id": 1}]}]}) == {
        "tags": [{"attributes": [{"value": ["This field is required."]}]}]}
    long_value = {"spec_id": 1, "value": "x" * 4097}
    assert errors({"tags": [{"label_id": 1, "frame": 0, "attributes": [long_value]}]}) == {
        "tags": [{"attributes": [{"value": [
            "Ensure this field has no more than 4096 characters."]}]}]}


def test_group_null_is_zero_and_huge_ids_are_refused() -> None:
    assert parse_labeled_data({"shapes": [dict(RECT, group=None)]}, "create").shapes[0].group == 0
    assert errors({"shapes": [dict(RECT, id=2**64)]}, "update") == {
        "shapes": [{"id": ["Ensure this value is less than or equal to 9223372036854775807."]}]}


# Validation against labels and frames ---------------------------------------------------

LABELS = label_infos([
    (1, None, [{"id": 10, "mutable": False, "default_value": "red"},
               {"id": 11, "mutable": True, "default_value": "0"}]),
    (2, 1, []),
])
SCOPE = Scope(LABELS, frozenset(range(4, 8)), "job")


def problem(payload: dict[str, Any]) -> str:
    data = parse_labeled_data(payload, "create")
    with pytest.raises(AnnotationError) as info:
        validate_data(data, SCOPE)
    return str(info.value)


def test_labels_attributes_and_frames() -> None:
    good = {"tags": [{"label_id": 1, "frame": 4, "attributes": [{"spec_id": 10, "value": "x"}]}],
            "shapes": [dict(RECT, frame=7, label_id=2)]}
    validate_data(parse_labeled_data(good, "create"), SCOPE)
    assert problem({"tags": [{"label_id": 3, "frame": 4}]}) == "label_id `3` is invalid"
    assert problem({"shapes": [dict(RECT, frame=4, attributes=[
        {"spec_id": 12, "value": "x"}])]}) == "spec_id `12` is invalid"
    assert problem({"shapes": [dict(RECT, frame=3)]}) == "frame `3` is outside the job"
    assert problem({"shapes": [dict(RECT, frame=8)]}) == "frame `8` is outside the job"


def test_track_attributes_by_mutability() -> None:
    def track(track_attrs: list[dict], shape_attrs: list[dict]) -> dict:
        return {"tracks": [{"label_id": 1, "frame": 4, "attributes": track_attrs, "shapes": [
            {"type": "rectangle", "frame": 4, "points": [0, 0, 1, 1], "attributes": shape_attrs}]}]}

    validate_data(parse_labeled_data(track([{"spec_id": 10, "value": "a"}],
                                           [{"spec_id": 11, "value": "1"}]), "create"), SCOPE)
    assert problem(track([{"spec_id": 11, "value": "1"}], [])) == "spec_id `11` is invalid"
    assert problem(track([], [{"spec_id": 10, "value": "a"}])) == "spec_id `10` is invalid"


def test_a_track_may_end_right_after_the_job() -> None:
    def track(last_frame: int, outside: bool) -> dict:
        return {"tracks": [{"label_id": 1, "frame": 4, "shapes": [
            {"type": "rectangle", "frame": 4, "points": [0, 0, 1, 1]},
            {"type": "rectangle", "frame": last_frame, "points": [0, 0, 1, 1],
             "outside": outside}]}]}

    validate_data(parse_labeled_data(track(8, True), "create"), SCOPE)
    assert problem(track(8, False)) == "frame `8` is outside the job"
    assert problem(track(9, True)) == "frame `9` is outside the job"


def test_defaults_are_added_on_read() -> None:
    data = LabeledData(
        tags=[Tag(label_id=1, frame=0, attributes=[AttributeValue(99, "stale")])],
        tracks=[Track(label_id=1, frame=0, shapes=[
            TrackedShape(type="rectangle", frame=0, points=[0, 0, 1, 1]),
            TrackedShape(type="rectangle", frame=5, points=[0, 0, 1, 1],
                         attributes=[AttributeValue(11, "7")]),
            TrackedShape(type="rectangle", frame=9, points=[0, 0, 1, 1]),
        ])])
    extend_attributes(data, LABELS)
    assert [(a.spec_id, a.value) for a in data.tags[0].attributes] == [(10, "red"), (11, "0")]
    track = data.tracks[0]
    assert [(a.spec_id, a.value) for a in track.attributes] == [(10, "red")]
    assert [[(a.spec_id, a.value) for a in s.attributes] for s in track.shapes] == [
        [(11, "0")], [(11, "7")], [(11, "7")]]


# Tracks -------------------------------------------------------------------------------------


def kf(frame: int, x: float = 0, *, outside: bool = False, kind: str = "rectangle",
       synthetic: bool = False) -> TrackedShape:
    points = [] if kind == "skeleton" else [x, 0, x + 10, 10]
    return TrackedShape(type=kind, frame=frame, points=points, outside=outside,
                        synthetic=synthetic)


def test_normalize_adds_an_outside_keyframe_or_moves_the_track() -> None:
    early = Track(label_id=1, frame=2, shapes=[kf(5, 3)])
    late = Track(label_id=1, frame=9, shapes=[kf(5, 3)])
    normalize_tracks([early, late])
    assert sorted((s.frame, s.outside) for s in early.shapes) == [(2, True), (5, False)]
    assert late.frame == 5
    skeleton = Track(label_id=1, frame=6, shapes=[kf(6, kind="skeleton")], elements=[
        Track(label_id=2, frame=3, shapes=[kf(3)]), Track(label_id=2, frame=8, shapes=[kf(8)])])
    normalize_tracks([skeleton])
    assert skeleton.frame == 3 and skeleton.shapes[0].frame == 3
    assert [e.frame for e in skeleton.elements] == [3, 3]
    # As CVAT's _sync_frames: first moved to the skeleton's frame 6, then to 3.
    assert sorted((s.frame, s.outside) for s in skeleton.elements[1].shapes) == [
        (3, True), (6, True), (8, False)]


def test_state_at_interpolates_or_holds() -> None:
    track = Track(label_id=1, frame=0, shapes=[kf(0, 0), kf(10, 100), kf(12, 100, outside=True)])
    assert state_at(track, 5).points == [50.0, 0.0, 60.0, 10.0]
    assert state_at(track, 11).points == [100, 0, 110, 10]  # the next keyframe is outside
    assert state_at(track, 13).outside
    assert state_at(Track(label_id=1, frame=3, shapes=[kf(3)]), 2) is None
    polygon = Track(label_id=1, frame=0, shapes=[
        TrackedShape(type="polygon", frame=0, points=[0, 0, 1, 0, 1, 1]),
        TrackedShape(type="polygon", frame=4, points=[0, 0, 2, 0, 2, 2, 0, 2])])
    assert state_at(polygon, 2).points == [0, 0, 1, 0, 1, 1]


def test_slice_marks_what_it_makes_up() -> None:
    track = Track(label_id=1, frame=1, shapes=[kf(1, 0), kf(8, 70), kf(9, 70, outside=True)])
    first = slice_track(track, 0, 3)
    assert [(s.frame, s.synthetic) for s in first.shapes] == [(1, False), (3, True)]
    assert first.shapes[1].points == [20.0, 0.0, 30.0, 10.0]
    middle = slice_track(track, 3, 6)
    assert [(s.frame, s.synthetic) for s in middle.shapes] == [(3, True), (6, True)]
    last = slice_track(track, 6, 8)
    assert [(s.frame, s.outside, s.synthetic) for s in last.shapes] == [
        (6, False, True), (8, False, False), (9, True, False)]
    assert slice_track(track, 10, 12) is None


# Split and merge ----------------------------------------------------------------------------


def parts_of(size: int, segment_size: int, overlap: int | None) -> list[JobPart]:
    specs = plan_segments(size, segment_size, overlap, is_video=False)
    return [JobPart(i + 1, s.start, s.stop, frozenset(range(s.start, s.stop + 1)))
            for i, s in enumerate(specs)]


def store_like(pieces: dict[int, LabeledData]) -> None:
    """What store.insert does to ids and links."""
    counter = itertools.count(1000)

    def track_ids(track: Track) -> None:
        track.id = next(counter)
        if track.continues is not None:
            track.continues_id = track.continues.id
        for keyframe in track.shapes:
            keyframe.id = next(counter)

    for piece in pieces.values():
        for obj in (*piece.tags, *piece.shapes):
            obj.id = next(counter)
        for track in piece.tracks:
            track_ids(track)
        for track in piece.tracks:
            for element in track.elements:
                track_ids(element)


def canonical_track(track: Track) -> tuple:
    """Keyframes that change what is seen: no leading outside keyframes, and no outside
    keyframe right after another (a task-level write may drop those in jobs where the
    object is never visible)."""
    shapes = []
    for shape in sorted(track.shapes, key=lambda s: s.frame):
        if shape.outside and (not shapes or shapes[-1].outside):
            continue
        shapes.append(shape)
    return (track.label_id, track.group, tuple(tracked_shape_key(s) for s in shapes),
            tuple(canonical_track(e) for e in track.elements))


def canonical(data: LabeledData) -> tuple:
    return (Counter(tag_key(t) for t in data.tags), Counter(shape_key(s) for s in data.shapes),
            Counter(canonical_track(t) for t in data.tracks if visible(t)))


def visible(track: Track) -> bool:
    return any(not s.outside for t in (track, *track.elements) for s in t.shapes)


@st.composite
def task_data(draw: st.DrawFn) -> tuple[list[JobPart], LabeledData]:
    size = draw(st.integers(1, 30))
    parts = parts_of(size, draw(st.integers(0, size + 2)), draw(st.integers(0, 6)))
    frames = st.integers(0, size - 1)
    xs = st.integers(0, 50).map(float)
    tags = draw(st.lists(st.builds(Tag, label_id=st.sampled_from([1, 2]), frame=frames),
                         max_size=4))
    shapes = draw(st.lists(st.builds(
        lambda f, x: Shape(type="rectangle", label_id=1, frame=f, points=[x, x, x + 5, x + 5]),
        frames, xs), max_size=6))

    def keyframes(draw_: st.DrawFn, kind: str) -> list[TrackedShape]:
        chosen = sorted(draw_(st.sets(st.integers(0, size), min_size=1, max_size=6)))
        out = []
        for frame in chosen:
            outside = frame == size or draw_(st.booleans())
            out.append(kf(frame, draw_(xs), outside=outside, kind=kind))
        return out

    tracks = []
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            tracks.append(Track(label_id=1, frame=0, shapes=keyframes(draw, "rectangle")))
        else:
            elements = [Track(label_id=2, frame=0, shapes=keyframes(draw, "points"))
                        for _ in range(2)]
            for element in elements:
                for shape in element.shapes:
                    shape.points = shape.points[:2]
            parent = keyframes(draw, "skeleton")
            tracks.append(Track(label_id=1, frame=parent[0].frame, shapes=parent,
                                elements=elements))
    for track in tracks:
        track.frame = min(s.frame for s in track.shapes)
        for element in track.elements:
            element.frame = min(s.frame for s in element.shapes)
    normalize_tracks(tracks)
    return parts, LabeledData(tags=tags, shapes=shapes, tracks=tracks)


@settings(deadline=None, max_examples=400)
@given(task_data())
def test_distribute_then_merge_gives_back_the_task_data(case: Any) -> None:
    parts, data = case
    pieces = distribute(data, parts)
    for part in parts:
        for obj in (*pieces[part.job_id].tags, *pieces[part.job_id].shapes):
            assert obj.frame in part.frames
        for track in pieces[part.job_id].tracks:
            for s in (*track.shapes, *(s for e in track.elements for s in e.shapes)):
                assert s.frame in part.frames or (s.frame == part.stop + 1 and s.outside)
    store_like(pieces)
    view = merge_jobs((p, pieces[p.job_id]) for p in parts)
    merged = view.data
    assert canonical(merged) == canonical(data)
    # Every stored row is behind exactly one shown object.
    stored = Counter((kind, job, obj.id) for job, piece in pieces.items()
                     for kind, objs in (("tag", piece.tags), ("shape", piece.shapes),
                                        ("track", piece.tracks)) for obj in objs)
    behind = Counter((kind, job, row) for (kind, _), rows in view.rows.items()
                     for job, row in rows)
    assert behind == stored


def test_edited_copies_on_an_overlap_frame_are_both_shown() -> None:
    parts = parts_of(10, 4, 1)  # [0, 3], [3, 6], [6, 9]
    pieces = distribute(LabeledData(shapes=[Shape(type="rectangle", label_id=1, frame=3,
                                                  points=[0, 0, 1, 1])]), parts)
    store_like(pieces)
    assert len(merge_jobs((p, pieces[p.job_id]) for p in parts).data.shapes) == 1
    pieces[2].shapes[0].points = [0, 0, 2, 2]
    view = merge_jobs((p, pieces[p.job_id]) for p in parts)
    assert len(view.data.shapes) == 2
    assert view.group("shape", pieces[2].shapes[0].id) == [(2, pieces[2].shapes[0].id)]
