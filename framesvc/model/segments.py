"""Segments (the frame ranges behind jobs), chunk sizes and job-count limits.

A segment is what a job shows; several jobs may share one (consensus replicas).  CVAT
has two kinds (``cvat-data-api.md`` §1.2):

* ``range``: the contiguous task-relative frames ``[start, stop]``;
* ``specific_frames``: ground-truth jobs, ``start = 0``, ``stop = size - 1`` and an
  explicit list of *absolute* frames.

Segmentation follows CVAT's ``_generate_segment_params`` (``cvat/apps/engine/task.py``)
and §8.2 of the spec exactly, including its edge cases.  Pure arithmetic, no I/O.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from framesvc.model.frames import FrameSpace

SegmentType = Literal["range", "specific_frames"]
SEGMENT_TYPES: frozenset[str] = frozenset({"range", "specific_frames"})

#: ``settings.MAX_CONSENSUS_REPLICAS`` and ``settings.MAX_JOBS_PER_TASK`` in CVAT.
MAX_CONSENSUS_REPLICAS = 11
MAX_JOBS_PER_TASK = 5000

#: Overlap CVAT gives video (interpolation-mode) tasks when none is requested.
DEFAULT_VIDEO_OVERLAP = 5

#: DRF's message for an empty list where one is required.
EMPTY_LIST = "This list may not be empty."


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    """One segment: its type, task-relative bounds and (GT only) absolute frames.

    For ``specific_frames`` segments ``frames`` is normalised to a sorted tuple without
    repeats, which is how CVAT stores ``Segment.frames``; it must not be empty (CVAT's
    ``Segment.clean``).  ``range`` segments carry ``frames=None``.
    """

    type: SegmentType
    start: int
    stop: int
    frames: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in SEGMENT_TYPES:
            raise ValueError(f"Unknown segment type {self.type!r}")
        if self.start < 0:
            raise ValueError(f"A segment cannot start at a negative frame ({self.start})")
        if self.stop < self.start:
            raise ValueError("stop_frame cannot be less than start_frame")
        if self.type == "range":
            if self.frames is not None:
                raise ValueError("A range segment cannot list specific frames")
            return
        if not self.frames:
            raise ValueError("frames and type == specific_frames can only be used together")
        normalized = tuple(sorted(set(self.frames)))
        if normalized[0] < 0:
            raise ValueError("Segment frames cannot be negative")
        object.__setattr__(self, "frames", normalized)

    @property
    def is_range(self) -> bool:
        return self.type == "range"

    @classmethod
    def range(cls, start: int, stop: int) -> SegmentSpec:
        return cls("range", start, stop)

    @classmethod
    def specific(cls, size: int, abs_frames: Iterable[int]) -> SegmentSpec:
        """A ground-truth segment over a task of ``size`` frames (``[0, size - 1]``)."""
        return cls("specific_frames", 0, size - 1, tuple(abs_frames))


def default_chunk_size(compressed_chunk_type: str, width: int, height: int) -> int:
    """CVAT's chunk size when the client sends none (``_create_thread``).

    ``imageset`` compressed chunks (images, point clouds, zip-chunk videos) hold about
    36 Full-HD frames' worth of pixels, between 2 and 72 frames, measured on the first
    task frame; ``video`` chunks always hold 36.
    """
    if compressed_chunk_type == "video":
        return 36
    if compressed_chunk_type != "imageset":
        raise ValueError(f"Unknown chunk type {compressed_chunk_type!r}")
    if width < 1 or height < 1:
        raise ValueError(f"Invalid frame size {width}x{height}")
    return max(2, min(72, 36 * 1920 * 1080 // (width * height)))


def segment_params(
    size: int, segment_size: int, overlap: int | None, *, is_video: bool
) -> tuple[int, int]:
    """Effective ``(segment_size, overlap)`` CVAT stores on the task (§8.2).

    ``segment_size`` 0 or larger than the task means one segment of ``size`` frames.  A
    missing overlap defaults to 0 when one segment holds the whole task, else 5 for
    video and 0 for images; any overlap is then capped at half a segment.
    """
    if size < 1:
        raise ValueError("A task without frames cannot be split into jobs")
    if segment_size < 0:
        raise ValueError(f"segment_size must not be negative, got {segment_size}")
    if overlap is not None and overlap < 0:
        raise ValueError(f"overlap must not be negative, got {overlap}")
    seg = size if segment_size == 0 or segment_size > size else segment_size
    if overlap is None:
        overlap = 0 if size <= seg else (DEFAULT_VIDEO_OVERLAP if is_video else 0)
    return seg, min(overlap, seg // 2)


def plan_segments(
    size: int, segment_size: int, overlap: int | None, *, is_video: bool
) -> list[SegmentSpec]:
    """Split a task of ``size`` frames into range segments exactly as CVAT does.

    Starts are ``range(0, size - overlap, seg - overlap)``, each segment is
    ``[start, min(start + seg - 1, size - 1)]``.  Because ``overlap <= seg // 2`` the
    stride is never 0 for ``size >= 1``; consecutive segments share exactly ``overlap``
    frames (every segment but the last has full length) and the last one, possibly cut
    short by the end of the task, still ends past its predecessor.
    """
    seg, ov = segment_params(size, segment_size, overlap, is_video=is_video)
    return [
        SegmentSpec.range(start, min(start + seg - 1, size - 1))
        for start in range(0, size - ov, seg - ov)
    ]


def order_files_by_mapping(
    mapping: Sequence[Sequence[str]], input_files: Iterable[str]
) -> list[str]:
    """Validate a ``job_file_mapping`` against the input files; return the task order.

    CVAT treats the mapping as the task's file order (``sorting_method`` becomes
    ``predefined``) and the mapped files must be a subset of the inputs; inputs that are
    not mapped are dropped from the task.  Messages are CVAT's: empty lists (DRF), a
    repeated file (``DataSerializer.validate_job_file_mapping``), an unknown file
    (``_create_thread``).
    """
    _check_mapping_shape(mapping)
    known = set(input_files)
    for name in itertools.chain.from_iterable(mapping):
        if name not in known:
            raise ValueError(f"Can't find file '{os.path.basename(name)}' in the input files")
    return [name for job in mapping for name in job]


def segments_from_file_mapping(
    mapping: Sequence[Sequence[str]], task_filenames: Sequence[str]
) -> list[SegmentSpec]:
    """One range segment per mapping entry, in order (CVAT's ``job_file_mapping``).

    ``task_filenames`` is the task's final file list in frame order; it must be exactly
    the mapping's files in the mapping's order (build it with
    :func:`order_files_by_mapping`).  Such tasks store ``segment_size = 0`` and
    ``overlap = 0``.
    """
    flat = order_files_by_mapping(mapping, task_filenames)
    if flat != list(task_filenames):
        raise ValueError(
            "The job file mapping must list every task file, in the task's frame order"
        )
    segments = []
    start = 0
    for job in mapping:
        segments.append(SegmentSpec.range(start, start + len(job) - 1))
        start += len(job)
    return segments


def _check_mapping_shape(mapping: Sequence[Sequence[str]]) -> None:
    if isinstance(mapping, str) or not mapping:
        raise ValueError(EMPTY_LIST)
    seen: set[str] = set()
    for job in mapping:
        if isinstance(job, str) or not job:
            raise ValueError(EMPTY_LIST)
        for name in job:
            if not isinstance(name, str) or not name.strip():
                raise ValueError("This field may not be blank.")
            if name in seen:
                raise ValueError(
                    f"The same file '{name}' cannot be used multiple times in the job file mapping"
                )
            seen.add(name)


def segment_abs_bounds(segment: SegmentSpec, space: FrameSpace) -> tuple[int, int]:
    """Absolute ``(start, stop)`` of a segment, as job meta reports them (§6.1)."""
    start = space.start + segment.start * space.step
    stop = min(space.start + segment.stop * space.step, space.stop)
    if start > space.stop:
        raise ValueError(
            f"Segment [{segment.start}, {segment.stop}] lies outside the task's {space.size} frames"
        )
    return start, stop


def segment_frame_set(segment: SegmentSpec, space: FrameSpace) -> list[int]:
    """A segment's absolute frames, sorted (CVAT's ``Segment.frame_set``, §1.2).

    ``range(data.start + seg.start * step, min(data.start + seg.stop * step, data.stop)
    + step, step)``; for specific-frames segments, the intersection of that range with
    the segment's frames (frames off the task's grid are dropped, as in CVAT).
    """
    start, stop = segment_abs_bounds(segment, space)
    frames = range(start, stop + 1, space.step)
    if segment.frames is None:
        return list(frames)
    return [f for f in segment.frames if f in frames]


def segment_for_frame(segments: Sequence[SegmentSpec], space: FrameSpace, rel: int) -> int:
    """Index (in ``segments``) of the segment that serves task frame ``rel``.

    CVAT's ``TaskFrameProvider._get_segment``: range segments first, then the others,
    each group in the given (creation) order; the first one containing the frame wins.
    """
    abs_frame = space.to_abs(rel)
    order = sorted(range(len(segments)), key=lambda i: not segments[i].is_range)
    for i in order:
        segment = segments[i]
        if segment.is_range:
            if segment.start <= rel <= segment.stop:
                return i
        elif segment.frames is not None and abs_frame in segment.frames:
            return i
    raise ValueError(f"No segment contains task frame {rel}")


def validate_consensus_replicas(
    value: int | None, *, max_replicas: int = MAX_CONSENSUS_REPLICAS
) -> int:
    """CVAT's ``TaskWriteSerializer.validate_consensus_replicas``: 0 or 2..max."""
    if value and (value == 1 or value < 0 or value > max_replicas):
        raise ValueError(
            "Consensus replicas must be 0 or a positive number more than 1 and less than "
            f"{max_replicas + 1}, got {value}"
        )
    return value or 0


def check_job_count(
    segment_count: int,
    consensus_replicas: int = 0,
    *,
    task_id: int | None = None,
    max_jobs: int = MAX_JOBS_PER_TASK,
) -> int:
    """Total annotation + replica jobs of a task; ``ValueError`` above the limit.

    CVAT enforces ``MAX_JOBS_PER_TASK`` in a ``pre_save`` signal, one job at a time, so
    an oversized task fails half-created.  We check the whole task up front with the
    same wording.  Ground-truth jobs do not count, as in CVAT.
    """
    total = segment_count * (consensus_replicas + 1)
    if total > max_jobs:
        who = f"task #{task_id}" if task_id is not None else "the task"
        raise ValueError(
            f"Cannot create job: {who} has reached the maximum limit of {max_jobs} jobs"
        )
    return total
