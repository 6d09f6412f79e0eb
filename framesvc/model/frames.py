"""Frame numbering: the frame filter, and a task's absolute frame space.

CVAT numbers frames in three ways (``cvat-data-api.md`` §1.1).  This module owns the
first two:

* **absolute** ("source", "data") numbers index the original media: the frame index in
  the video, or the position in the sorted image list *before* start/stop/step;
* **task-relative** numbers are 0-based positions among the task's frames *after*
  start/stop/step: ``abs = start + rel * step``.

The third kind (a frame's index inside a job's sorted frame set) belongs to
:mod:`framesvc.model.plans`.  Everything here is pure arithmetic, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

#: CVAT's frame filter grammar (``Data.get_frame_step``, ``DataSerializer``).  CVAT uses
#: ``re.search``, so the expression may be embedded in other text (``"x step=2 y"``).
FRAME_FILTER_RE = re.compile(r"step\s*=\s*([1-9]\d*)")

INVALID_FRAME_FILTER = "Invalid frame filter expression"
STOP_BEFORE_START = "Stop frame must be more or equal start frame"


def parse_frame_filter(expression: str) -> int:
    """Return the frame step encoded in a CVAT ``frame_filter`` string.

    ``""`` means "no filter" (step 1), which is what CVAT stores by default.  Any other
    string must contain ``step=N`` with ``N >= 1`` (searched, not fully matched, exactly
    like CVAT); otherwise :class:`ValueError` with CVAT's message
    ``"Invalid frame filter expression"``.
    """
    if expression == "":
        return 1
    match = FRAME_FILTER_RE.search(expression)
    if match is None:
        raise ValueError(INVALID_FRAME_FILTER)
    return int(match.group(1))


@dataclass(frozen=True, slots=True)
class FrameSpace:
    """The absolute source frames of a task: ``range(start, stop + 1, step)``.

    ``start`` and ``stop`` are absolute and inclusive, with ``stop`` already clamped to
    the last frame actually taken (``start + (size - 1) * step``), which is what CVAT
    stores in ``Data.stop_frame`` after task creation.  Build one with
    :func:`resolve_frame_space` from request parameters, or directly from stored rows.
    """

    start: int
    stop: int
    step: int = 1

    def __post_init__(self) -> None:
        if self.step < 1:
            raise ValueError(f"The frame step must be a positive integer, got {self.step}")
        if self.start < 0:
            raise ValueError(f"The start frame must not be negative, got {self.start}")
        if self.stop < self.start:
            raise ValueError(STOP_BEFORE_START)
        if (self.stop - self.start) % self.step:
            raise ValueError(
                f"The stop frame {self.stop} is not on the frame grid "
                f"(start {self.start}, step {self.step})"
            )

    @property
    def size(self) -> int:
        """Number of task frames (CVAT ``Data.size``); always >= 1."""
        return (self.stop - self.start) // self.step + 1

    def to_abs(self, rel: int) -> int:
        """Absolute frame of task-relative frame ``rel`` (``ValueError`` if out of range)."""
        if not 0 <= rel < self.size:
            raise ValueError(f"Task frame {rel} is outside [0, {self.size - 1}]")
        return self.start + rel * self.step

    def to_rel(self, abs_frame: int) -> int:
        """Task-relative number of ``abs_frame``.

        Strict: ``ValueError`` unless the frame is one of the task's frames.  CVAT's own
        conversion floors silently (``(abs - start) // step``); we never need that, and a
        silent floor would hide bugs.
        """
        if not self.contains_abs(abs_frame):
            raise ValueError(f"Frame {abs_frame} is not one of the task's frames")
        return (abs_frame - self.start) // self.step

    def contains_abs(self, abs_frame: int) -> bool:
        """Whether ``abs_frame`` is one of the task's frames."""
        return self.start <= abs_frame <= self.stop and (abs_frame - self.start) % self.step == 0

    def abs_range(self) -> range:
        """The task's absolute frames as a ``range`` (O(1) memory)."""
        return range(self.start, self.stop + 1, self.step)

    def abs_frames(self) -> Iterator[int]:
        """Iterate the task's absolute frames in task order."""
        return iter(self.abs_range())


def resolve_frame_space(
    source_count: int,
    start_frame: int = 0,
    stop_frame: int | None = None,
    step: int = 1,
) -> FrameSpace:
    """Apply CVAT's start/stop/step rules to media with ``source_count`` frames.

    * ``stop_frame`` ``None`` or ``0`` means "up to the last frame" (``Data.stop_frame``
      defaults to 0);
    * a ``stop_frame`` beyond the media is clamped to the last frame, and the result's
      ``stop`` is clamped further to the last frame the step actually lands on
      (``start + (size - 1) * step``), as CVAT does after creating the task;
    * ``start_frame > stop_frame`` is rejected with CVAT's message ``"Stop frame must be
      more or equal start frame"`` whenever a stop frame was sent, so an explicit
      ``stop_frame=0`` with ``start_frame > 0`` is rejected too (CVAT's
      ``DataSerializer.validate`` compares both keys when both are present);
    * a start frame beyond the media is rejected with a clear message (CVAT fails on an
      assertion for images and creates an empty task for videos).
    """
    if source_count < 1:
        raise ValueError("The media has no frames")
    if step < 1:
        raise ValueError(f"The frame step must be a positive integer, got {step}")
    if start_frame < 0:
        raise ValueError(f"The start frame must not be negative, got {start_frame}")
    if stop_frame is not None and stop_frame < 0:
        raise ValueError(f"The stop frame must not be negative, got {stop_frame}")
    if stop_frame is not None and start_frame > stop_frame:
        raise ValueError(STOP_BEFORE_START)
    last = source_count - 1
    if start_frame > last:
        raise ValueError(
            f"The start frame {start_frame} is beyond the last frame of the media ({last})"
        )
    upper = last if not stop_frame else min(stop_frame, last)
    size = (upper - start_frame) // step + 1
    return FrameSpace(start=start_frame, stop=start_frame + (size - 1) * step, step=step)
