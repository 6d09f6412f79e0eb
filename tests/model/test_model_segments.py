"""Chunk size default, segmentation, job file mapping, segment frame sets, limits."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from model_strategies import PROPERTY, TaskShape, frame_spaces, gt_segments, task_shapes

from framesvc.model import (
    FrameSpace,
    SegmentSpec,
    check_job_count,
    default_chunk_size,
    order_files_by_mapping,
    plan_segments,
    segment_abs_bounds,
    segment_for_frame,
    segment_frame_set,
    segment_params,
    segments_from_file_mapping,
    validate_consensus_replicas,
)

R = SegmentSpec.range

# -- chunk size -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(1920, 1080, 36), (640, 480, 72), (4000, 3000, 6), (8000, 4700, 2), (1, 1, 72)],
)
def test_default_chunk_size_for_imagesets(width: int, height: int, expected: int) -> None:
    assert default_chunk_size("imageset", width, height) == expected


def test_default_chunk_size_for_video_ignores_the_frame_size() -> None:
    assert default_chunk_size("video", 64, 48) == 36
    assert default_chunk_size("video", 7680, 4320) == 36


@PROPERTY
@given(st.integers(1, 20000), st.integers(1, 20000))
def test_default_chunk_size_bounds(width: int, height: int) -> None:
    size = default_chunk_size("imageset", width, height)
    assert 2 <= size <= 72
    assert size == max(2, min(72, 36 * 1920 * 1080 // (width * height)))


@pytest.mark.parametrize(("kind", "w", "h"), [("list", 10, 10), ("imageset", 0, 10)])
def test_default_chunk_size_rejects(kind: str, w: int, h: int) -> None:
    with pytest.raises(ValueError):
        default_chunk_size(kind, w, h)


# -- segmentation -----------------------------------------------------------------------


def _cvat_segments(size: int, seg: int, ov: int) -> list[tuple[int, int]]:
    # The generator in CVAT's _generate_segment_params, given effective seg/overlap.
    return [(s, min(s + seg - 1, size - 1)) for s in range(0, size - ov, seg - ov)]


@PROPERTY
@given(task_shapes())
def test_segments_cover_the_task_and_obey_overlap(shape: TaskShape) -> None:
    size = shape.space.size
    segs = shape.segments
    seg, ov = segment_params(size, shape.segment_size, shape.overlap, is_video=shape.is_video)
    assert 1 <= seg <= size
    assert 0 <= ov <= seg // 2
    assert [(s.start, s.stop) for s in segs] == _cvat_segments(size, seg, ov)
    assert all(s.is_range and s.frames is None for s in segs)

    # every task frame is covered, nothing outside the task
    covered = set()
    for s in segs:
        assert 0 <= s.start <= s.stop <= size - 1
        assert s.stop - s.start + 1 <= seg
        covered.update(range(s.start, s.stop + 1))
    assert covered == set(range(size))
    assert segs[0].start == 0 and segs[-1].stop == size - 1

    # consecutive segments: fixed stride, full length, exactly `ov` shared frames
    for a, b in itertools.pairwise(segs):
        assert b.start == a.start + seg - ov
        assert a.stop - a.start + 1 == seg
        assert a.stop - b.start + 1 == ov
        assert b.stop > a.stop


@pytest.mark.parametrize(
    ("size", "segment_size", "overlap", "is_video", "expected", "params"),
    [
        # video default overlap 5: §8.2
        (23, 10, None, True, [(0, 9), (5, 14), (10, 19), (15, 22)], (10, 5)),
        # images default overlap 0
        (23, 10, None, False, [(0, 9), (10, 19), (20, 22)], (10, 0)),
        # explicit overlap is capped at seg // 2
        (23, 10, 8, False, [(0, 9), (5, 14), (10, 19), (15, 22)], (10, 5)),
        (20, 10, 2, False, [(0, 9), (8, 17), (16, 19)], (10, 2)),
        # segment_size 0 or larger than the task: one job; default overlap 0 then
        (50, 0, None, True, [(0, 49)], (50, 0)),
        (50, 80, None, True, [(0, 49)], (50, 0)),
        (50, 50, None, True, [(0, 49)], (50, 0)),
        # an explicit overlap is kept (capped) even with one job, as CVAT stores it
        (50, 0, 7, False, [(0, 49)], (50, 7)),
        # tiny tasks
        (1, 0, None, True, [(0, 0)], (1, 0)),
        (1, 1, 3, True, [(0, 0)], (1, 0)),
        (2, 0, None, True, [(0, 1)], (2, 0)),
        (2, 2, 1, False, [(0, 1)], (2, 1)),
        # overlap == seg - 1 (only possible for seg 2): stride 1
        (5, 2, 1, False, [(0, 1), (1, 2), (2, 3), (3, 4)], (2, 1)),
        (5, 2, None, True, [(0, 1), (1, 2), (2, 3), (3, 4)], (2, 1)),
        # seg 1: one frame per job, overlap forced to 0
        (3, 1, 5, True, [(0, 0), (1, 1), (2, 2)], (1, 0)),
        # a short last segment, mostly overlap
        (11, 10, 5, False, [(0, 9), (5, 10)], (10, 5)),
        (12, 4, 2, False, [(0, 3), (2, 5), (4, 7), (6, 9), (8, 11)], (4, 2)),
    ],
)
def test_plan_segments_examples(
    size: int,
    segment_size: int,
    overlap: int | None,
    is_video: bool,
    expected: list[tuple[int, int]],
    params: tuple[int, int],
) -> None:
    segs = plan_segments(size, segment_size, overlap, is_video=is_video)
    assert [(s.start, s.stop) for s in segs] == expected
    assert segment_params(size, segment_size, overlap, is_video=is_video) == params


@pytest.mark.parametrize(
    ("size", "segment_size", "overlap"), [(0, 0, None), (5, -1, 0), (5, 2, -1)]
)
def test_plan_segments_rejects(size: int, segment_size: int, overlap: int | None) -> None:
    with pytest.raises(ValueError):
        plan_segments(size, segment_size, overlap, is_video=False)


# -- job file mapping -------------------------------------------------------------------


def test_segments_from_file_mapping() -> None:
    mapping = [["a.jpg", "b.jpg"], ["c.png"], ["d.jpg", "e.png", "f.bmp"]]
    files = order_files_by_mapping(mapping, ["f.bmp", "e.png", "d.jpg", "c.png", "b.jpg", "a.jpg"])
    assert files == ["a.jpg", "b.jpg", "c.png", "d.jpg", "e.png", "f.bmp"]
    assert segments_from_file_mapping(mapping, files) == [R(0, 1), R(2, 2), R(3, 5)]


def test_file_mapping_drops_unmapped_inputs_like_cvat() -> None:
    assert order_files_by_mapping([["b"], ["a"]], ["a", "b", "c"]) == ["b", "a"]


@pytest.mark.parametrize(
    ("mapping", "task_files", "message"),
    [
        ([], ["a"], "^This list may not be empty.$"),
        ([["a"], []], ["a"], "^This list may not be empty.$"),
        ([["a", ""]], ["a"], "may not be blank"),
        (
            [["a", "b"], ["a"]],
            ["a", "b"],
            "^The same file 'a' cannot be used multiple times in the job file mapping$",
        ),
        ([["a"], ["dir/x.jpg"]], ["a"], "^Can't find file 'x.jpg' in the input files$"),
        ([["b"], ["a"]], ["a", "b"], "task's frame order"),
        ([["a"]], ["a", "b"], "every task file"),
    ],
)
def test_segments_from_file_mapping_rejects(
    mapping: list[list[str]], task_files: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        segments_from_file_mapping(mapping, task_files)


@PROPERTY
@given(st.lists(st.integers(1, 8), min_size=1, max_size=30))
def test_file_mapping_segments_partition_the_task(job_sizes: list[int]) -> None:
    names = [f"img_{i:04d}.jpg" for i in range(sum(job_sizes))]
    mapping, pos = [], 0
    for n in job_sizes:
        mapping.append(names[pos : pos + n])
        pos += n
    segs = segments_from_file_mapping(mapping, names)
    assert [s.stop - s.start + 1 for s in segs] == job_sizes
    assert segs[0].start == 0 and segs[-1].stop == len(names) - 1
    assert all(b.start == a.stop + 1 for a, b in itertools.pairwise(segs))


# -- segment frame sets -----------------------------------------------------------------


@PROPERTY
@given(task_shapes())
def test_range_segment_frame_sets(shape: TaskShape) -> None:
    space = shape.space
    for seg in shape.segments:
        frames = segment_frame_set(seg, space)
        assert frames == [space.to_abs(r) for r in range(seg.start, seg.stop + 1)]
        start_abs, stop_abs = segment_abs_bounds(seg, space)
        assert (frames[0], frames[-1]) == (start_abs, stop_abs)


@PROPERTY
@given(st.data())
def test_specific_frames_segment_frame_set(data: st.DataObject) -> None:
    space = data.draw(frame_spaces())
    seg = data.draw(gt_segments(space))
    extra = data.draw(st.lists(st.integers(0, space.stop + 30), max_size=5))
    noisy = SegmentSpec("specific_frames", 0, space.size - 1, (*seg.frames, *extra, *seg.frames))
    expected = sorted(set(noisy.frames) & set(space.abs_range()))
    assert segment_frame_set(noisy, space) == expected
    assert segment_frame_set(seg, space) == list(seg.frames)
    assert segment_abs_bounds(seg, space) == (space.start, space.stop)


def test_specific_segment_example() -> None:
    space = FrameSpace(10, 40, 3)  # abs 10, 13, ..., 40 (11 frames)
    gt = SegmentSpec.specific(space.size, [40, 13, 13, 11, 22])
    assert gt.frames == (11, 13, 22, 40)
    assert segment_frame_set(gt, space) == [13, 22, 40]  # 11 is off the step grid


@pytest.mark.parametrize(
    ("args"),
    [
        ("range", 3, 2, None),
        ("range", 0, 2, (1,)),
        ("specific_frames", 0, 2, ()),
        ("x", 0, 1, None),
    ],
)
def test_segment_spec_rejects(args: tuple) -> None:
    with pytest.raises(ValueError):
        SegmentSpec(*args)


def test_segment_for_frame_prefers_range_segments() -> None:
    space = FrameSpace(0, 19, 1)
    gt = SegmentSpec.specific(20, [0, 5, 15])
    segments = [gt, R(0, 9), R(5, 14), R(10, 19)]
    assert segment_for_frame(segments, space, 0) == 1
    assert segment_for_frame(segments, space, 7) == 1  # first in creation order
    assert segment_for_frame(segments, space, 12) == 2
    assert segment_for_frame(segments, space, 19) == 3
    assert segment_for_frame([gt], space, 5) == 0
    with pytest.raises(ValueError):
        segment_for_frame([gt], space, 6)


# -- limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(None, 0), (0, 0), (2, 2), (11, 11)])
def test_consensus_replicas_accepted(value: int | None, expected: int) -> None:
    assert validate_consensus_replicas(value) == expected


@pytest.mark.parametrize("value", [1, 12, -1])
def test_consensus_replicas_rejected(value: int) -> None:
    message = (
        "Consensus replicas must be 0 or a positive number more than 1 and less than 12, "
        f"got {value}"
    )
    with pytest.raises(ValueError) as err:
        validate_consensus_replicas(value)
    assert str(err.value) == message


def test_job_count_limit() -> None:
    assert check_job_count(1000, 4) == 5000
    assert check_job_count(5000) == 5000
    with pytest.raises(ValueError) as err:
        check_job_count(1001, 4, task_id=7)
    assert str(err.value) == (
        "Cannot create job: task #7 has reached the maximum limit of 5000 jobs"
    )
    with pytest.raises(ValueError):
        check_job_count(5001)
