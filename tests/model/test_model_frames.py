"""Frame filter, start/stop/step resolution and abs <-> rel numbering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from model_strategies import PROPERTY, frame_spaces

from framesvc.model import FrameSpace, parse_frame_filter, resolve_frame_space


@pytest.mark.parametrize(
    ("expression", "step"),
    [("", 1), ("step=5", 5), ("step = 12", 12), ("step=1", 1), ("x step=3 y", 3), ("step=10", 10)],
)
def test_parse_frame_filter_accepts_cvat_expressions(expression: str, step: int) -> None:
    assert parse_frame_filter(expression) == step


@pytest.mark.parametrize(
    "expression", ["step=0", "step=07", "step=-1", "step=", "abc", "steps", " "]
)
def test_parse_frame_filter_rejects_others(expression: str) -> None:
    with pytest.raises(ValueError, match=r"^Invalid frame filter expression$"):
        parse_frame_filter(expression)


@PROPERTY
@given(st.integers(1, 10**6), st.sampled_from(["step={}", "step ={}", "step= {}", "a step={} b"]))
def test_parse_frame_filter_roundtrip(step: int, template: str) -> None:
    assert parse_frame_filter(template.format(step)) == step


def _cvat_video_size(count: int, start: int, stop: int | None, step: int) -> int:
    # _create_thread, video branch: len(range(start, min(stop + 1 if stop else n, n), step))
    return len(range(start, min(stop + 1 if stop else count, count), step))


def _cvat_images_size(count: int, start: int, stop: int | None, step: int) -> int:
    # ImageListReader: stop = n if not stop else min(n, stop + 1); len(range(start, stop, step))
    upper = count if not stop else min(count, stop + 1)
    return len(range(start, upper, step))


@PROPERTY
@given(st.data())
def test_resolve_frame_space_matches_cvat_sizes(data: st.DataObject) -> None:
    count = data.draw(st.integers(1, 500))
    start = data.draw(st.integers(0, count - 1))
    stop = data.draw(st.one_of(st.none(), st.integers(start, count + 50)))
    step = data.draw(st.integers(1, 20))
    space = resolve_frame_space(count, start, stop, step)
    assert space.size == _cvat_video_size(count, start, stop, step)
    assert space.size == _cvat_images_size(count, start, stop, step)
    # CVAT's stop clamp after creation: start + (size - 1) * step
    assert space.stop == start + (space.size - 1) * step
    assert space.start == start and space.step == step
    assert space.stop <= count - 1
    if stop:
        assert space.stop <= stop


def test_resolve_frame_space_examples() -> None:
    assert resolve_frame_space(10) == FrameSpace(0, 9, 1)
    assert resolve_frame_space(10, 0, 0) == FrameSpace(0, 9, 1)  # 0 = last
    assert resolve_frame_space(10, 2, 100, 3) == FrameSpace(2, 8, 3)  # clamped to the grid
    assert resolve_frame_space(10, 2, 7, 3) == FrameSpace(2, 5, 3)
    assert resolve_frame_space(10, 9) == FrameSpace(9, 9, 1)
    assert resolve_frame_space(10, 4, 4) == FrameSpace(4, 4, 1)
    assert resolve_frame_space(1).size == 1


@pytest.mark.parametrize(
    ("count", "start", "stop", "step", "message"),
    [
        (10, 5, 3, 1, "^Stop frame must be more or equal start frame$"),
        (10, 5, 0, 1, "^Stop frame must be more or equal start frame$"),  # explicit 0
        (10, 10, None, 1, "beyond the last frame of the media"),
        (10, 25, 30, 1, "beyond the last frame of the media"),
        (0, 0, None, 1, "no frames"),
        (10, 0, None, 0, "step"),
        (10, -1, None, 1, "negative"),
        (10, 0, -1, 1, "negative"),
    ],
)
def test_resolve_frame_space_rejects(
    count: int, start: int, stop: int | None, step: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_frame_space(count, start, stop, step)


@PROPERTY
@given(frame_spaces())
def test_abs_rel_roundtrip(space: FrameSpace) -> None:
    abs_frames = list(space.abs_frames())
    assert len(abs_frames) == space.size
    assert abs_frames == list(space.abs_range())
    for rel, abs_frame in enumerate(abs_frames):
        assert space.to_abs(rel) == abs_frame == space.start + rel * space.step
        assert space.to_rel(abs_frame) == rel
        assert space.contains_abs(abs_frame)
    assert abs_frames[0] == space.start and abs_frames[-1] == space.stop


@PROPERTY
@given(frame_spaces(), st.integers(-5, 400))
def test_to_rel_is_strict(space: FrameSpace, abs_frame: int) -> None:
    on_grid = abs_frame in space.abs_range()
    assert space.contains_abs(abs_frame) == on_grid
    if on_grid:
        assert space.to_abs(space.to_rel(abs_frame)) == abs_frame
    else:
        with pytest.raises(ValueError):
            space.to_rel(abs_frame)


@PROPERTY
@given(frame_spaces(), st.integers(-3, 3))
def test_to_abs_rejects_frames_outside_the_task(space: FrameSpace, offset: int) -> None:
    rel = space.size + offset if offset >= 0 else offset
    with pytest.raises(ValueError):
        space.to_abs(rel)


@pytest.mark.parametrize(("start", "stop", "step"), [(0, 10, 0), (-1, 5, 1), (5, 4, 1), (0, 10, 3)])
def test_frame_space_rejects_inconsistent_bounds(start: int, stop: int, step: int) -> None:
    with pytest.raises(ValueError):
        FrameSpace(start, stop, step)
