"""Pure frame and chunk math: numbering, segments, chunk plans, GT frame selection.

No I/O lives here (no database, files or HTTP), so every numbering question (which
frames does job 7's chunk 3 hold?) is answered in one place and property-tested.

* :mod:`.frames`   — frame filter, a task's absolute frame space, abs <-> rel;
* :mod:`.segments` — chunk size default, segmentation, job file mapping, segment frame
  sets, consensus/job-count limits;
* :mod:`.plans`    — :class:`ChunkPlan` and the task/job chunk and frame rules;
* :mod:`.gt`       — ground-truth frame selection, seed-compatible with CVAT.
"""

from framesvc.model.frames import FrameSpace, parse_frame_filter, resolve_frame_space
from framesvc.model.gt import GtSelectionError, manual, random_per_job, random_uniform
from framesvc.model.plans import (
    ChunkPlan,
    frame_position_in_chunk,
    job_chunk_count,
    job_chunk_number_range,
    job_chunk_plan_by_index,
    job_chunk_plan_by_number,
    job_frame_check,
    job_preview_frame,
    task_chunk_count,
    task_chunk_plan,
    task_chunk_rel_range,
    task_frame_check,
    task_preview_frame,
)
from framesvc.model.segments import (
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

__all__ = [
    "ChunkPlan",
    "FrameSpace",
    "GtSelectionError",
    "SegmentSpec",
    "check_job_count",
    "default_chunk_size",
    "frame_position_in_chunk",
    "job_chunk_count",
    "job_chunk_number_range",
    "job_chunk_plan_by_index",
    "job_chunk_plan_by_number",
    "job_frame_check",
    "job_preview_frame",
    "manual",
    "order_files_by_mapping",
    "parse_frame_filter",
    "plan_segments",
    "random_per_job",
    "random_uniform",
    "resolve_frame_space",
    "segment_abs_bounds",
    "segment_for_frame",
    "segment_frame_set",
    "segment_params",
    "segments_from_file_mapping",
    "task_chunk_count",
    "task_chunk_plan",
    "task_chunk_rel_range",
    "task_frame_check",
    "task_preview_frame",
    "validate_consensus_replicas",
]
