"""Ground-truth frame selection: CVAT's RNG path, counts, validation messages."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from model_strategies import PROPERTY, TaskShape, frame_spaces, task_shapes

from framesvc.model import (
    FrameSpace,
    GtSelectionError,
    SegmentSpec,
    manual,
    plan_segments,
    random_per_job,
    random_uniform,
    segment_frame_set,
    segment_params,
)
from framesvc.model.gt import format_list

seeds = st.integers(0, 2**32 - 1)


def _cvat_uniform_abs(space: FrameSpace, count: int, seed: int) -> list[int]:
    # JobWriteSerializer.create, random_uniform: choice over the task's *absolute*
    # frames (Data.get_valid_frame_indices), stored sorted in Segment.frames.
    rng = np.random.Generator(np.random.MT19937(seed=seed))
    valid = range(space.start, space.stop + 1, space.step)
    return sorted(rng.choice(list(valid), size=count, shuffle=False, replace=False).tolist())


@PROPERTY
@given(frame_spaces(), st.data(), seeds)
def test_random_uniform_picks_what_cvat_picks(
    space: FrameSpace, data: st.DataObject, seed: int
) -> None:
    count = data.draw(st.integers(1, space.size))
    rel = random_uniform(space.size, frame_count=count, seed=seed)
    assert [space.to_abs(r) for r in rel] == _cvat_uniform_abs(space, count, seed)
    assert len(rel) == count == len(set(rel))
    assert rel == sorted(rel) and rel[0] >= 0 and rel[-1] < space.size
    assert random_uniform(space.size, frame_count=count, seed=seed) == rel  # reproducible


@PROPERTY
@given(st.integers(1, 400), st.floats(0.0001, 1.0), seeds)
def test_random_uniform_share(size: int, share: float, seed: int) -> None:
    rel = random_uniform(size, frame_share=share, seed=seed)
    assert len(rel) == max(1, int(share * size))
    assert rel == random_uniform(size, frame_count=len(rel), seed=seed)


def test_random_uniform_pinned_values() -> None:
    # Regression pins (NumPy's MT19937 stream is stable across versions).
    assert random_uniform(100, frame_count=5, seed=42) == [5, 39, 52, 60, 88]
    assert random_uniform(10, frame_count=10, seed=0) == list(range(10))


def test_random_uniform_without_seed_still_selects() -> None:
    rel = random_uniform(50, frame_count=7)
    assert len(set(rel)) == 7 and all(0 <= r < 50 for r in rel)


@pytest.mark.parametrize(
    ("kwargs", "message", "field"),
    [
        ({}, 'One of the fields "frame_count", "frame_share" required', None),
        (
            {"frame_count": 2, "frame_share": 0.5},
            'Only 1 of the fields "frame_count", "frame_share" can be used',
            None,
        ),
        (
            {"frame_count": 11},
            "The number of frames requested (11) must not be greater than the number of "
            "the task frames (10)",
            None,
        ),
        ({"frame_count": 0}, "Ensure this value is greater than or equal to 1.", "frame_count"),
        ({"frame_share": 1.5}, "Value must be in the range [0; 1]", "frame_share"),
        ({"frame_share": float("nan")}, "Value must be in the range [0; 1]", "frame_share"),
        ({"frame_share": 0.0}, "The number of validation frames is not specified", None),
        (
            {"frame_count": 1, "seed": -1},
            "Ensure this value is greater than or equal to 0.",
            "random_seed",
        ),
    ],
)
def test_random_uniform_rejects(kwargs: dict, message: str, field: str | None) -> None:
    with pytest.raises(GtSelectionError) as err:
        random_uniform(10, **kwargs)
    assert err.value.message == str(err.value) == message
    assert err.value.field == field


# -- random_per_job -------------------------------------------------------------------------


def _cvat_per_job_abs(
    segments: list[SegmentSpec], space: FrameSpace, overlap: int, frame_count: int, seed: int
) -> list[int]:
    # JobWriteSerializer.create, random_per_job, transcribed on absolute frame sets.
    def to_rel(f: int) -> int:
        return (f - space.start) // space.step

    rng = np.random.Generator(np.random.MT19937(seed=seed))
    frames: list[int] = []
    for segment in segments:
        segment_frames = set(map(to_rel, segment_frame_set(segment, space)))
        selected_frames = segment_frames.intersection(frames)
        missing_count = min(len(segment_frames), frame_count) - len(selected_frames)
        if missing_count <= 0:
            continue
        selectable = set(sorted(segment_frames)[overlap * (segment.start != 0) :]).difference(
            selected_frames
        )
        frames.extend(rng.choice(tuple(selectable), size=missing_count, replace=False).tolist())
    return sorted({space.start + f * space.step for f in frames})


@PROPERTY
@given(task_shapes(), st.data(), seeds)
def test_random_per_job_picks_what_cvat_picks(
    shape: TaskShape, data: st.DataObject, seed: int
) -> None:
    space = shape.space
    seg_size, overlap = segment_params(
        space.size, shape.segment_size, shape.overlap, is_video=shape.is_video
    )
    count = data.draw(st.integers(1, seg_size))
    try:
        rel = random_per_job(
            shape.segments,
            space,
            segment_size=seg_size,
            overlap=overlap,
            frames_per_job_count=count,
            seed=seed,
        )
    except GtSelectionError as err:
        # Only a short last segment whose free frames run out (a 500 in CVAT).
        assert "frames can be used" in err.message
        with pytest.raises(ValueError):
            _cvat_per_job_abs(shape.segments, space, overlap, count, seed)
        return
    assert [space.to_abs(r) for r in rel] == _cvat_per_job_abs(
        shape.segments, space, overlap, count, seed
    )
    assert rel == sorted(set(rel)) and all(0 <= r < space.size for r in rel)
    chosen = set(rel)
    for seg in shape.segments:
        job = set(range(seg.start, seg.stop + 1))
        assert len(job & chosen) >= min(len(job), count)
    if overlap == 0:
        assert len(rel) == sum(min(s.stop - s.start + 1, count) for s in shape.segments)


def test_random_per_job_example() -> None:
    space = FrameSpace(0, 99, 1)
    segments = plan_segments(100, 25, 0, is_video=False)
    rel = random_per_job(
        segments, space, segment_size=25, overlap=0, frames_per_job_count=3, seed=7
    )
    assert [sum(s.start <= r <= s.stop for r in rel) for s in segments] == [3, 3, 3, 3]
    share = random_per_job(
        segments, space, segment_size=25, overlap=0, frames_per_job_share=0.12, seed=7
    )
    assert share == rel  # int(0.12 * 25) == 3


def test_random_per_job_short_last_segment_is_a_clear_error() -> None:
    # size 23, seg 10, overlap 5: the last job [15, 22] has 3 frames outside the overlap
    space = FrameSpace(0, 22, 1)
    segments = plan_segments(23, 10, 5, is_video=False)
    with pytest.raises(GtSelectionError, match="frames can be used"):
        random_per_job(segments, space, segment_size=10, overlap=5, frames_per_job_count=8, seed=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, 'One of the fields "frames_per_job_count", "frames_per_job_share" required'),
        (
            {"frames_per_job_count": 1, "frames_per_job_share": 0.1},
            'Only 1 of the fields "frames_per_job_count", "frames_per_job_share" can be used',
        ),
        (
            {"frames_per_job_count": 21},
            "The number of frames requested (21) must be not be greater than the segment size (10)",
        ),
        ({"frames_per_job_share": 0.0}, "The number of validation frames is not specified"),
    ],
)
def test_random_per_job_rejects(kwargs: dict, message: str) -> None:
    space = FrameSpace(0, 19, 1)
    segments = plan_segments(20, 10, 0, is_video=False)
    with pytest.raises(GtSelectionError) as err:
        random_per_job(segments, space, segment_size=10, overlap=0, **kwargs)
    assert err.value.message == message and err.value.field is None


# -- manual ---------------------------------------------------------------------------------


@PROPERTY
@given(st.integers(1, 300), st.data())
def test_manual_accepts_distinct_task_frames(size: int, data: st.DataObject) -> None:
    frames = data.draw(st.lists(st.integers(0, size - 1), min_size=1, unique=True))
    assert manual(frames, size) == sorted(frames)


@pytest.mark.parametrize(
    ("frames", "message", "field"),
    [
        ([], "This list may not be empty.", "frames"),
        ([1, 2, 1], "Frames must not repeat", None),
        ([3, -1], "Ensure this value is greater than or equal to 0.", "frames"),
        ([1, 12, 10], "The following frames do not exist in the task: 10, 12", None),
        (
            list(range(5, 25)),
            "The following frames do not exist in the task: "
            "10, 11, 12, 13, 14, 15, 16, 17, 18, 19 (and 5 more)",
            None,
        ),
    ],
)
def test_manual_rejects(frames: list[int], message: str, field: str | None) -> None:
    with pytest.raises(GtSelectionError) as err:
        manual(frames, 10)
    assert err.value.message == message
    assert err.value.field == field


def test_format_list() -> None:
    assert format_list(["a"]) == "a"
    assert format_list([str(i) for i in range(10)]) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
    assert format_list([str(i) for i in range(12)], max_items=2) == "0, 1 (and 10 more)"


@PROPERTY
@given(st.integers(1, 50))
def test_gt_segment_round_trip(size: int) -> None:
    # The frames a GT job stores are absolute; its frame set gives them back.
    space = FrameSpace(2, 2 + 3 * (size - 1), 3)
    rel = random_uniform(size, frame_count=max(1, size // 3), seed=size)
    gt = SegmentSpec.specific(size, (space.to_abs(r) for r in rel))
    assert [space.to_rel(f) for f in segment_frame_set(gt, space)] == rel
