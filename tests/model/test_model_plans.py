"""Chunk plans: task chunks, job chunks by index and by number, frames, previews."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from model_strategies import PROPERTY, TaskShape, gt_segments, task_shapes

from framesvc.model import (
    ChunkPlan,
    FrameSpace,
    SegmentSpec,
    frame_position_in_chunk,
    job_chunk_count,
    job_chunk_number_range,
    job_chunk_plan_by_index,
    job_chunk_plan_by_number,
    job_frame_check,
    job_preview_frame,
    plan_segments,
    segment_frame_set,
    task_chunk_count,
    task_chunk_plan,
    task_frame_check,
    task_preview_frame,
)

# -- task chunks ------------------------------------------------------------------------


@PROPERTY
@given(task_shapes())
def test_task_chunks_partition_the_task(shape: TaskShape) -> None:
    space, cs = shape.space, shape.chunk_size
    count = task_chunk_count(space.size, cs)
    assert count == math.ceil(space.size / cs)
    plans = [task_chunk_plan(space, cs, n) for n in range(count)]
    assert [f for p in plans for f in p.frames] == list(space.abs_frames())
    assert all(len(p) == cs for p in plans[:-1])
    assert 1 <= len(plans[-1]) <= cs
    assert not any(p.has_placeholders for p in plans)


@PROPERTY
@given(task_shapes(), st.data())
def test_task_frame_lives_at_frame_mod_chunk_size(shape: TaskShape, data: st.DataObject) -> None:
    # cvat_sdk.datasets relies on member_index = frame % chunk_size in task chunks.
    space, cs = shape.space, shape.chunk_size
    rel = data.draw(st.integers(0, space.size - 1))
    abs_frame = task_frame_check(space, rel)
    chunk, offset = frame_position_in_chunk(rel, cs)
    assert (chunk, offset) == (rel // cs, rel % cs)
    assert task_chunk_plan(space, cs, chunk).frames[offset] == abs_frame == space.to_abs(rel)


@pytest.mark.parametrize("number", [-1, 4, 7])
def test_task_chunk_number_out_of_range(number: int) -> None:
    space = FrameSpace(0, 99, 1)
    with pytest.raises(ValueError) as err:
        task_chunk_plan(space, 30, number)
    assert str(err.value) == (
        f"Invalid chunk number '{number}'. The chunk number should be in the [0, 3] range"
    )


@pytest.mark.parametrize("rel", [-1, 10, 11])
def test_task_frame_out_of_range(rel: int) -> None:
    with pytest.raises(ValueError) as err:
        task_frame_check(FrameSpace(5, 50, 5), rel)
    # CVAT's message says [0, size] although size itself is rejected
    assert str(err.value) == (
        f"Invalid frame '{rel}'. The frame number should be in the [0, 10] range"
    )


def test_task_chunk_example_with_step() -> None:
    space = FrameSpace(3, 3 + 4 * 9, 4)  # 10 frames: 3, 7, ..., 39
    assert task_chunk_plan(space, 4, 0).frames == (3, 7, 11, 15)
    assert task_chunk_plan(space, 4, 2).frames == (35, 39)


# -- job chunks by index ----------------------------------------------------------------


@PROPERTY
@given(task_shapes())
def test_job_chunks_by_index_partition_each_job(shape: TaskShape) -> None:
    space, cs = shape.space, shape.chunk_size
    for seg in shape.segments:
        frame_set = segment_frame_set(seg, space)
        count = job_chunk_count(frame_set, cs)
        assert count == math.ceil(len(frame_set) / cs)
        plans = [job_chunk_plan_by_index(frame_set, cs, i) for i in range(count)]
        assert [f for p in plans for f in p.frames] == frame_set
        assert all(len(p) == cs for p in plans[:-1])
        with pytest.raises(ValueError, match=rf"should be in the \[0, {count - 1}\] range"):
            job_chunk_plan_by_index(frame_set, cs, count)


@PROPERTY
@given(task_shapes(), st.data())
def test_gt_job_chunks_by_index_are_compacted(shape: TaskShape, data: st.DataObject) -> None:
    space, cs = shape.space, shape.chunk_size
    gt = data.draw(gt_segments(space))
    frame_set = segment_frame_set(gt, space)
    plans = [
        job_chunk_plan_by_index(frame_set, cs, i) for i in range(job_chunk_count(frame_set, cs))
    ]
    assert [f for p in plans for f in p.frames] == sorted(gt.frames)
    assert not any(p.has_placeholders for p in plans)
    # a set is accepted too and sorted first
    assert job_chunk_plan_by_index(set(frame_set), cs, 0) == plans[0]


@PROPERTY
@given(task_shapes(), st.data())
def test_job_frames_map_to_their_index_chunk(shape: TaskShape, data: st.DataObject) -> None:
    space, cs = shape.space, shape.chunk_size
    seg = data.draw(st.one_of(st.sampled_from(shape.segments), gt_segments(space)))
    frame_set = segment_frame_set(seg, space)
    members = set(frame_set)
    for rel in range(-2, space.size + 2):
        abs_frame = space.start + rel * space.step
        if 0 <= rel < space.size and abs_frame in members:
            index = job_frame_check(frame_set, space, rel)
            assert frame_set[index] == abs_frame
            chunk, offset = frame_position_in_chunk(index, cs)
            assert job_chunk_plan_by_index(frame_set, cs, chunk).frames[offset] == abs_frame
        else:
            with pytest.raises(ValueError) as err:
                job_frame_check(frame_set, space, rel)
            assert str(err.value) == f"Incorrect requested frame number: {rel}"


def test_job_chunks_are_not_aligned_with_task_chunks_under_overlap() -> None:
    space = FrameSpace(0, 22, 1)
    segs = plan_segments(23, 10, None, is_video=True)  # [0-9] [5-14] [10-19] [15-22]
    second = segment_frame_set(segs[1], space)
    assert job_chunk_plan_by_index(second, 4, 0).frames == (5, 6, 7, 8)
    assert task_chunk_plan(space, 4, 1).frames == (4, 5, 6, 7)


# -- job chunks by number ---------------------------------------------------------------


@PROPERTY
@given(task_shapes())
def test_range_job_number_chunks_are_task_chunk_intersections(shape: TaskShape) -> None:
    space, cs = shape.space, shape.chunk_size
    for seg in shape.segments:
        members = set(segment_frame_set(seg, space))
        first, last = job_chunk_number_range(seg, cs)
        assert (first, last) == (seg.start // cs, seg.stop // cs)
        for n in range(first, last + 1):
            plan = job_chunk_plan_by_number(seg, space, cs, n)
            task_plan = task_chunk_plan(space, cs, n)
            assert plan.frames == tuple(f for f in task_plan.frames if f in members)
            assert len(plan) >= 1 and not plan.has_placeholders
        for n in (first - 1, last + 1):
            with pytest.raises(ValueError) as err:
                job_chunk_plan_by_number(seg, space, cs, n)
            assert str(err.value) == (
                f"Invalid chunk number '{n}'. The chunk number should be in the "
                f"[{first}, {last}] range"
            )


@PROPERTY
@given(task_shapes(), st.data())
def test_gt_number_chunks_are_padded_to_the_task_chunk(
    shape: TaskShape, data: st.DataObject
) -> None:
    space, cs = shape.space, shape.chunk_size
    gt = data.draw(gt_segments(space))
    members = set(gt.frames)
    first, last = job_chunk_number_range(gt, cs)
    assert (first, last) == (0, task_chunk_count(space.size, cs) - 1)
    for n in range(first, last + 1):
        plan = job_chunk_plan_by_number(gt, space, cs, n)
        task_plan = task_chunk_plan(space, cs, n)
        assert len(plan) == len(task_plan)
        for got, task_frame in zip(plan.frames, task_plan.frames, strict=True):
            assert got == (task_frame if task_frame in members else None)
        assert plan.source_frames == tuple(f for f in task_plan.frames if f in members)


def test_gt_number_chunk_example() -> None:
    space = FrameSpace(0, 9, 1)
    gt = SegmentSpec.specific(10, [1, 4, 8])
    assert job_chunk_plan_by_number(gt, space, 4, 0).frames == (None, 1, None, None)
    assert job_chunk_plan_by_number(gt, space, 4, 2).frames == (8, None)
    assert job_chunk_plan_by_index(segment_frame_set(gt, space), 4, 0).frames == (1, 4, 8)


# -- plan identity ----------------------------------------------------------------------

frame_tuples = st.lists(st.one_of(st.none(), st.integers(0, 30)), max_size=6).map(tuple)


@PROPERTY
@given(frame_tuples, frame_tuples)
def test_plan_equality_is_frame_equality(a: tuple, b: tuple) -> None:
    pa, pb = ChunkPlan(a), ChunkPlan(b)
    assert (pa == pb) == (a == b)
    assert (pa.key_material() == pb.key_material()) == (a == b)
    if a == b:
        assert hash(pa) == hash(pb)
    assert ChunkPlan(list(a)) == pa  # built from a list, frozen to a tuple


def test_key_material_distinguishes_placeholders() -> None:
    assert ChunkPlan((1, None)).key_material() != ChunkPlan((1,)).key_material()
    assert ChunkPlan((12,)).key_material() != ChunkPlan((1, 2)).key_material()
    assert ChunkPlan((1, 2)).key_material().startswith(b"chunkplan/1:")


@PROPERTY
@given(task_shapes())
def test_aligned_job_and_task_chunks_share_one_plan(shape: TaskShape) -> None:
    space, cs = shape.space, shape.chunk_size
    task_plans = {task_chunk_plan(space, cs, n) for n in range(task_chunk_count(space.size, cs))}
    for seg in shape.segments:
        frame_set = segment_frame_set(seg, space)
        for i in range(job_chunk_count(frame_set, cs)):
            plan = job_chunk_plan_by_index(frame_set, cs, i)
            aligned = seg.start % cs == 0 and (len(plan) == cs or seg.stop == space.size - 1)
            if aligned:
                assert plan in task_plans  # same frames -> same plan, same hash


@pytest.mark.parametrize("bad", [(-1,), (True,), (3, -2)])
def test_chunk_plan_rejects_invalid_frames(bad: tuple) -> None:
    with pytest.raises(ValueError):
        ChunkPlan(bad)


# -- previews ---------------------------------------------------------------------------


@PROPERTY
@given(task_shapes(), st.data())
def test_previews(shape: TaskShape, data: st.DataObject) -> None:
    space = shape.space
    for seg in shape.segments:
        assert job_preview_frame(seg, space) == seg.start
    gt = data.draw(gt_segments(space))
    assert job_preview_frame(gt, space) == space.to_rel(min(gt.frames))
    assert task_preview_frame([gt, *shape.segments], space) == 0


@pytest.mark.parametrize("chunk_size", [0, -3])
def test_chunk_size_must_be_positive(chunk_size: int) -> None:
    with pytest.raises(ValueError):
        task_chunk_count(10, chunk_size)
    with pytest.raises(ValueError):
        frame_position_in_chunk(0, chunk_size)
