"""Chunk and frame plans: which source frames a request needs, in which order.

A :class:`ChunkPlan` is the answer to "which frames does task 5's chunk 3 / job 7's
chunk 2 hold?" as a tuple of absolute source frames; ``None`` entries are 1x1
placeholders (ground-truth chunks requested by task chunk ``number``).  The media layer
turns a plan into bytes; the cache keys entries by the plan's frames, so a task chunk
and a job chunk holding the same frames share one entry (CVAT builds them separately,
§12.4 of the spec).

Chunk numbering (``cvat-data-api.md`` §1.3, §2.3–2.6):

* task chunk ``n``: task-relative frames ``[n * cs, (n + 1) * cs - 1]`` clipped to the
  task;
* job chunk by ``index`` ``i``: ``sorted(frame_set)[i * cs:(i + 1) * cs]`` (compacted
  for GT jobs);
* job chunk by ``number`` ``n`` (deprecated): task chunk ``n`` restricted to the job,
  placeholder-padded to the task chunk's length for GT jobs.

Functions taking a ``frame_set`` accept what :func:`segment_frame_set` returns: a
sequence of absolute frames sorted ascending (sets are sorted first).  Pure arithmetic,
no I/O; errors are :class:`ValueError` carrying CVAT's 400 message.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from framesvc.model.frames import FrameSpace
from framesvc.model.segments import SegmentSpec, segment_for_frame, segment_frame_set

#: Version tag of :meth:`ChunkPlan.key_material`; bump it if the encoding changes so
#: old cache entries can never be mistaken for new ones.
KEY_MATERIAL_VERSION = b"chunkplan/1:"


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """The ordered absolute source frames of one chunk; ``None`` = placeholder entry.

    Equality and hashing depend on the frames only, so plans built by different routes
    (a task chunk, a job chunk by index, a job chunk by number) compare equal exactly
    when they hold the same frames in the same order.
    """

    frames: tuple[int | None, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.frames, tuple):
            object.__setattr__(self, "frames", tuple(self.frames))
        for frame in self.frames:
            if frame is not None and (isinstance(frame, bool) or frame < 0):
                raise ValueError(f"Invalid source frame {frame!r} in a chunk plan")

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[int | None]:
        return iter(self.frames)

    @property
    def has_placeholders(self) -> bool:
        return None in self.frames

    @property
    def source_frames(self) -> tuple[int, ...]:
        """The real frames to read, in chunk order (placeholders left out)."""
        return tuple(f for f in self.frames if f is not None)

    def key_material(self) -> bytes:
        """Deterministic bytes identifying the plan's content, for cache keys.

        The cache combines this with the data id, data version, quality and output
        format.  Placeholders encode as ``_`` so a padded plan never collides with a
        compacted one.
        """
        body = ",".join("_" if f is None else str(f) for f in self.frames)
        return KEY_MATERIAL_VERSION + body.encode("ascii")


# -- validation messages (CVAT's, see frame_provider.py) ------------------------------


def _invalid_chunk(number: int, first: int, last: int) -> ValueError:
    return ValueError(
        f"Invalid chunk number '{number}'. "
        f"The chunk number should be in the [{first}, {last}] range"
    )


def _sorted_frames(frame_set: Sequence[int] | AbstractSet[int]) -> Sequence[int]:
    if isinstance(frame_set, AbstractSet):
        return sorted(frame_set)
    return frame_set


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"The chunk size must be a positive integer, got {chunk_size}")


# -- task chunks ------------------------------------------------------------------------


def task_chunk_count(size: int, chunk_size: int) -> int:
    """Number of task chunks: ``ceil(size / chunk_size)``."""
    _check_chunk_size(chunk_size)
    return _ceil_div(size, chunk_size)


def task_chunk_rel_range(space: FrameSpace, chunk_size: int, number: int) -> range:
    """Task-relative frames of task chunk ``number`` (validated, CVAT's message)."""
    last = task_chunk_count(space.size, chunk_size) - 1
    if not 0 <= number <= last:
        raise _invalid_chunk(number, 0, last)
    return range(number * chunk_size, min((number + 1) * chunk_size, space.size))


def task_chunk_plan(space: FrameSpace, chunk_size: int, number: int) -> ChunkPlan:
    """Plan of task chunk ``number``: exactly the task's frames of that chunk."""
    rel = task_chunk_rel_range(space, chunk_size, number)
    return ChunkPlan(tuple(space.start + r * space.step for r in rel))


# -- job chunks -------------------------------------------------------------------------


def job_chunk_count(frame_set: Sequence[int] | AbstractSet[int], chunk_size: int) -> int:
    """Number of job chunks by index: ``ceil(frame_count / chunk_size)``."""
    _check_chunk_size(chunk_size)
    return _ceil_div(len(frame_set), chunk_size)


def job_chunk_plan_by_index(
    frame_set: Sequence[int] | AbstractSet[int], chunk_size: int, index: int
) -> ChunkPlan:
    """Plan of job chunk ``index``: ``sorted(frame_set)[index*cs:(index+1)*cs]``.

    The same for range and ground-truth jobs (GT chunks are compacted: GT frames only).
    """
    frames = _sorted_frames(frame_set)
    last = job_chunk_count(frames, chunk_size) - 1
    if not 0 <= index <= last:
        raise _invalid_chunk(index, 0, last)
    return ChunkPlan(tuple(frames[index * chunk_size : (index + 1) * chunk_size]))


def job_chunk_number_range(segment: SegmentSpec, chunk_size: int) -> tuple[int, int]:
    """Valid task chunk numbers for a job: ``[start // cs, stop // cs]`` (task-relative)."""
    _check_chunk_size(chunk_size)
    return segment.start // chunk_size, segment.stop // chunk_size


def job_chunk_plan_by_number(
    segment: SegmentSpec, space: FrameSpace, chunk_size: int, number: int
) -> ChunkPlan:
    """Plan of a job chunk requested by task chunk ``number`` (deprecated API).

    * Range jobs: the job's frames that fall into task chunk ``number``, compacted (may
      hold fewer than ``chunk_size`` frames).
    * Ground-truth (specific-frames) jobs: exactly the task chunk's frame count, in task
      chunk order, with ``None`` (a 1x1 placeholder) for every frame outside the GT set
      (CVAT's ``prepare_custom_masked_range_segment_chunk(insert_placeholders=True)``).
    """
    first, last = job_chunk_number_range(segment, chunk_size)
    if not first <= number <= last:
        raise _invalid_chunk(number, first, last)
    rel = task_chunk_rel_range(space, chunk_size, number)
    task_frames = [space.start + r * space.step for r in rel]
    if segment.is_range:
        lo = max(rel.start, segment.start)
        hi = min(rel.stop - 1, segment.stop)
        return ChunkPlan(tuple(space.start + r * space.step for r in range(lo, hi + 1)))
    members = set(segment_frame_set(segment, space))
    return ChunkPlan(tuple(f if f in members else None for f in task_frames))


# -- frames -------------------------------------------------------------------------------


def task_frame_check(space: FrameSpace, rel: int) -> int:
    """Validate task frame ``rel``; return its absolute frame.

    CVAT's message says ``[0, size]`` although the check is ``rel < size``.
    """
    if not 0 <= rel < space.size:
        raise ValueError(
            f"Invalid frame '{rel}'. The frame number should be in the [0, {space.size}] range"
        )
    return space.start + rel * space.step


def job_frame_check(
    frame_set: Sequence[int] | AbstractSet[int], space: FrameSpace, rel: int
) -> int:
    """Validate task frame ``rel`` for a job; return its index in the job's frame set.

    The frame must be one of the job's frames (for GT jobs: a GT frame), else CVAT's
    ``"Incorrect requested frame number: N"``.  Combine the index with
    :func:`frame_position_in_chunk` to find the job chunk and the entry within it.
    """
    frames = _sorted_frames(frame_set)
    abs_frame = space.start + rel * space.step
    index = bisect.bisect_left(frames, abs_frame)
    if rel < 0 or index >= len(frames) or frames[index] != abs_frame:
        raise ValueError(f"Incorrect requested frame number: {rel}")
    return index


def frame_position_in_chunk(index: int, chunk_size: int) -> tuple[int, int]:
    """``(chunk, offset)`` of the ``index``-th frame of a chunked frame sequence.

    For a task, ``index`` is the task-relative frame (task chunks); for a job, the frame's
    index in the job's sorted frame set (job chunks by index).
    """
    _check_chunk_size(chunk_size)
    if index < 0:
        raise ValueError(f"Invalid frame index {index}")
    return divmod(index, chunk_size)


# -- previews -----------------------------------------------------------------------------


def job_preview_frame(segment: SegmentSpec, space: FrameSpace) -> int:
    """Task-relative frame shown as a job's preview: the segment's first frame (§4)."""
    frames = segment_frame_set(segment, space)
    if not frames:
        raise ValueError("The job has no frames")
    return space.to_rel(frames[0])


def task_preview_frame(segments: Sequence[SegmentSpec], space: FrameSpace) -> int:
    """Task-relative frame shown as a task's preview.

    CVAT previews the segment that serves task frame 0 (range segments first), i.e. that
    segment's first frame.
    """
    return job_preview_frame(segments[segment_for_frame(segments, space, 0)], space)
