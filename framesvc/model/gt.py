"""Ground-truth frame selection for ``POST /api/jobs`` (``cvat-data-api.md`` §9.5).

Reproduces CVAT's ``JobWriteSerializer`` (``cvat/apps/engine/serializers.py``) so that
the same ``random_seed`` picks the same frames as CVAT: NumPy
``Generator(MT19937(seed))`` with the same ``choice`` arguments, fed the same candidate
sequences in the same order.

All functions return **task-relative** frames, sorted and without repeats (CVAT stores
``Segment.frames`` sorted); convert with :meth:`FrameSpace.to_abs` for the GT segment.
Errors are :class:`GtSelectionError` carrying CVAT's message and, for per-field DRF
errors, the field name (render ``{field: [message]}``; otherwise ``[message]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from framesvc.model.frames import FrameSpace
from framesvc.model.segments import SegmentSpec, segment_frame_set

FORMATTED_LIST_DISPLAY_THRESHOLD = 10
NOT_SPECIFIED = "The number of validation frames is not specified"


class GtSelectionError(ValueError):
    """A rejected frame selection request: CVAT's message, and the field if per-field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def format_list(
    items: Sequence[str], *, max_items: int | None = None, separator: str = ", "
) -> str:
    """CVAT's ``utils.format_list``: at most 10 items, then ``" (and N more)"``."""
    if max_items is None:
        max_items = FORMATTED_LIST_DISPLAY_THRESHOLD
    remainder = len(items) - max_items
    more = f" (and {remainder} more)" if remainder > 0 else ""
    return separator.join(items[:max_items]) + more


def _require_one_of(values: dict[str, object]) -> None:
    """CVAT's ``field_validation.require_one_of_fields`` (a field counts when sent)."""
    active = sum(v is not None for v in values.values())
    if active == 1:
        return
    options = ", ".join(f'"{k}"' for k in values)
    if not active:
        raise GtSelectionError(f"One of the fields {options} required")
    raise GtSelectionError(f"Only 1 of the fields {options} can be used")


def _check_count_field(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise GtSelectionError("Ensure this value is greater than or equal to 1.", name)


def _check_share_field(name: str, value: float | None) -> None:
    # ``not 0 <= v <= 1`` also rejects NaN, as CVAT's validate_share does.
    if value is not None and not 0 <= value <= 1:
        raise GtSelectionError("Value must be in the range [0; 1]", name)


def _check_seed(seed: int | None) -> None:
    if seed is not None and seed < 0:
        raise GtSelectionError("Ensure this value is greater than or equal to 0.", "random_seed")


def _rng(seed: int | None) -> np.random.Generator:
    # The bit generator is named explicitly, as in CVAT, so picks stay reproducible
    # whatever NumPy's default generator becomes.
    return np.random.Generator(np.random.MT19937(seed=seed))


def random_uniform(
    size: int,
    frame_count: int | None = None,
    frame_share: float | None = None,
    seed: int | None = None,
) -> list[int]:
    """``random_uniform``: frames drawn without replacement from the whole task.

    Exactly one of ``frame_count`` (>= 1, at most ``size``) or ``frame_share`` (in
    [0, 1]; ``max(1, int(share * size))`` frames) must be given.  A share of exactly 0
    is rejected with CVAT's ``"The number of validation frames is not specified"``
    (CVAT tests the value for truthiness).
    """
    _check_count_field("frame_count", frame_count)
    _check_share_field("frame_share", frame_share)
    _check_seed(seed)
    _require_one_of({"frame_count": frame_count, "frame_share": frame_share})
    if frame_count:
        if size < frame_count:
            raise GtSelectionError(
                f"The number of frames requested ({frame_count}) "
                f"must not be greater than the number of the task frames ({size})"
            )
    elif frame_share:
        frame_count = max(1, int(frame_share * size))
    else:
        raise GtSelectionError(NOT_SPECIFIED)
    # CVAT draws from the list of absolute frames; choice() picks positions independently
    # of the values, so drawing positions 0..size-1 selects the same frames.
    picked = _rng(seed).choice(list(range(size)), size=frame_count, shuffle=False, replace=False)
    return sorted(int(f) for f in picked)


def random_per_job(
    segments: Sequence[SegmentSpec],
    space: FrameSpace,
    *,
    segment_size: int,
    overlap: int,
    frames_per_job_count: int | None = None,
    frames_per_job_share: float | None = None,
    seed: int | None = None,
) -> list[int]:
    """``random_per_job``: the same number of GT frames from every annotation job.

    ``segments`` are the task's annotation (range) segments in creation order;
    ``segment_size``/``overlap`` are the values stored on the task.  Per segment, CVAT
    picks the frames still missing (frames chosen for the previous segment's overlap
    count), never from the first ``overlap`` frames of a non-first segment.  The share
    form gives ``min(max(1, int(share * segment_size)), size)`` frames per job.
    """
    _check_count_field("frames_per_job_count", frames_per_job_count)
    _check_share_field("frames_per_job_share", frames_per_job_share)
    _check_seed(seed)
    _require_one_of(
        {"frames_per_job_count": frames_per_job_count, "frames_per_job_share": frames_per_job_share}
    )
    size = space.size
    if frames_per_job_count:
        frame_count = frames_per_job_count
        if size < frame_count:
            # CVAT's wording, including its typo and the segment size it names.
            raise GtSelectionError(
                f"The number of frames requested ({frame_count}) "
                f"must be not be greater than the segment size ({segment_size})"
            )
    elif frames_per_job_share:
        frame_count = min(max(1, int(frames_per_job_share * segment_size)), size)
    else:
        raise GtSelectionError(NOT_SPECIFIED)

    rng = _rng(seed)
    frames: list[int] = []
    # The set operations below mirror CVAT's line for line: the candidate order handed
    # to rng.choice() is the iteration order of these int sets, which must match.
    for segment in segments:
        segment_frames = set(map(space.to_rel, segment_frame_set(segment, space)))
        selected_frames = segment_frames.intersection(frames)
        selected_count = len(selected_frames)

        missing_count = min(len(segment_frames), frame_count) - selected_count
        if missing_count <= 0:
            continue

        selectable_segment_frames = set(
            sorted(segment_frames)[overlap * (segment.start != 0) :]
        ).difference(selected_frames)
        if missing_count > len(selectable_segment_frames):
            # CVAT lets NumPy fail here (a 500); a short last segment whose frames are
            # mostly overlap can have fewer free frames than it needs.
            raise GtSelectionError(
                f"Cannot select {frame_count} frames from the job with frames "
                f"[{segment.start}, {segment.stop}]: only "
                f"{len(selectable_segment_frames) + selected_count} frames can be used"
            )

        frames.extend(
            rng.choice(tuple(selectable_segment_frames), size=missing_count, replace=False).tolist()
        )
    return sorted(set(frames))


def manual(frames: Sequence[int], size: int) -> list[int]:
    """``manual``: an explicit, non-empty list of task-relative frames."""
    if not frames:
        raise GtSelectionError("This list may not be empty.", "frames")
    if any(f < 0 for f in frames):
        raise GtSelectionError("Ensure this value is greater than or equal to 0.", "frames")
    unique = set(frames)
    if len(unique) != len(frames):
        raise GtSelectionError("Frames must not repeat")
    invalid = unique.difference(range(size))
    if invalid:
        listed = format_list(tuple(map(str, sorted(invalid))))
        raise GtSelectionError(f"The following frames do not exist in the task: {listed}")
    return sorted(unique)
