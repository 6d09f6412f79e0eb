"""Shared hypothesis strategies for the model tests: random task shapes.

Not a test module (no ``test_`` prefix); imported by the ``test_model_*`` modules.  The
name is unique on purpose: ``tests/`` has no packages, so modules share one namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st

from framesvc.model import FrameSpace, SegmentSpec, plan_segments, resolve_frame_space

#: No per-example deadline: the machine is shared and slow examples are not failures.
PROPERTY = settings(deadline=None)


@st.composite
def frame_spaces(draw: st.DrawFn, max_count: int = 300) -> FrameSpace:
    """A task's frame space from random media length and start/stop/step."""
    count = draw(st.integers(1, max_count))
    start = draw(st.integers(0, count - 1))
    stop = draw(st.one_of(st.none(), st.just(0), st.integers(start, count + 20)))
    if stop == 0 and start > 0:
        stop = None
    step = draw(st.integers(1, 7))
    return resolve_frame_space(count, start, stop, step)


@dataclass(frozen=True)
class TaskShape:
    space: FrameSpace
    segments: list[SegmentSpec]
    segment_size: int
    overlap: int | None
    is_video: bool
    chunk_size: int


@st.composite
def task_shapes(draw: st.DrawFn) -> TaskShape:
    """A task with its range segments (as CVAT would split it) and a chunk size."""
    space = draw(frame_spaces())
    segment_size = draw(st.integers(0, space.size + 5))
    overlap = draw(st.one_of(st.none(), st.integers(0, 20)))
    is_video = draw(st.booleans())
    chunk_size = draw(st.integers(1, 40))
    segments = plan_segments(space.size, segment_size, overlap, is_video=is_video)
    return TaskShape(space, segments, segment_size, overlap, is_video, chunk_size)


@st.composite
def gt_segments(draw: st.DrawFn, space: FrameSpace) -> SegmentSpec:
    """A ground-truth (specific-frames) segment over ``space``."""
    rels = draw(st.sets(st.integers(0, space.size - 1), min_size=1, max_size=space.size))
    return SegmentSpec.specific(space.size, (space.to_abs(r) for r in rels))
