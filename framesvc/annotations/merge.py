"""A task's annotations: the merged view of its jobs, and task-level writes split by job.

CVAT keeps annotations per job; a task's annotations are those of its "annotation"
jobs (not ground truth, not consensus replicas), merged in job order
(``TaskAnnotation.init_from_db``).  Adjacent jobs share ``overlap`` frames, so a
task-level write puts an object on a shared frame into every job that shows the frame
(``AnnotationIR.slice`` per job, ``put_task_data``), and the merge has to fold the
copies back into one.

What framesvc does, and how it differs from CVAT's merge (``AnnotationManager.merge``,
which matches objects on overlap frames by label and IoU with the Hungarian algorithm):

* tags and shapes: the union over the jobs, where an object on a frame shown by an
  earlier job that holds an *identical* object (same everything but the id) is the same
  object and shown once.  Copies that were edited apart in their jobs are both shown;
  CVAT would keep the earlier job's copy when the two still overlap by IoU >= 0.75.
* tracks: a task-level write cuts a track at job borders (``tracks.slice_track``) and
  links each piece to the one in the previous job (``continues_id``); the view joins
  linked pieces into one track (keyframes of all pieces, the earlier job's keyframe when
  two pieces disagree on a frame, without the synthetic keyframes made up at the cuts).
  Tracks written into jobs separately are not matched with each other; CVAT would
  match them on the overlap frames by IoU.

:class:`TaskView` remembers which stored rows stand behind each shown object, so that
a task-level update or delete of that object reaches every copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from framesvc.annotations.model import (
    LabeledData,
    Shape,
    Tag,
    Track,
    TrackedShape,
    shape_key,
    tag_key,
)
from framesvc.annotations.tracks import slice_track

#: (kind, id) of an object; kinds are "tag", "shape", "track".
ObjectRef = tuple[str, int]
#: (job id, row id) of a stored top-level object.
RowRef = tuple[int, int]


@dataclass(frozen=True, slots=True)
class JobPart:
    """An annotation job as the task sees it: its task-relative frames."""

    job_id: int
    start: int
    stop: int
    frames: frozenset[int]


@dataclass
class TaskView:
    data: LabeledData
    #: The stored rows behind each shown object, by the shown object's (kind, id).
    rows: dict[ObjectRef, list[RowRef]] = field(default_factory=dict)
    _by_row: dict[ObjectRef, list[RowRef]] | None = field(default=None, repr=False)

    def group(self, kind: str, object_id: int) -> list[RowRef] | None:
        """The rows of the shown object that has, or stands for, row ``object_id``."""
        if self._by_row is None:
            self._by_row = {(k, row_id): rows for (k, _), rows in self.rows.items()
                            for _, row_id in rows}
        return self.rows.get((kind, object_id)) or self._by_row.get((kind, object_id))


def _ordered(parts: Iterable[tuple[JobPart, LabeledData]]) -> list[tuple[JobPart, LabeledData]]:
    return sorted(parts, key=lambda p: (p[0].start, p[0].job_id))


def _fold(kind: str, parts: list[tuple[JobPart, list[Tag] | list[Shape]]],
          key: object, view: TaskView) -> list:
    """Union of tags or shapes, identical copies on shared frames shown once."""
    shown: list = []
    reps: dict[tuple, list[tuple[object, JobPart]]] = {}
    for part, objects in parts:
        used: set[tuple[tuple, int]] = set()
        for obj in objects:
            k = key(obj)  # type: ignore[operator]
            match = None
            for index, (rep, rep_part) in enumerate(reps.get(k, [])):
                if (rep_part.job_id != part.job_id and obj.frame in rep_part.frames
                        and (k, index) not in used):
                    match = index, rep
                    break
            if match is not None:
                used.add((k, match[0]))
                view.rows[(kind, match[1].id)].append((part.job_id, obj.id))  # type: ignore[attr-defined]
                continue
            reps.setdefault(k, []).append((obj, part))
            shown.append(obj)
            view.rows[(kind, obj.id)] = [(part.job_id, obj.id)]
    return shown


def _join_shapes(chain: Sequence[Track]) -> list[TrackedShape]:
    """Keyframes of linked pieces: earlier pieces win a frame, cut artefacts dropped."""
    by_frame: dict[int, TrackedShape] = {}
    last = len(chain) - 1
    for index, piece in enumerate(chain):
        keyframes = sorted(piece.shapes, key=lambda s: s.frame)
        for position, keyframe in enumerate(keyframes):
            if keyframe.synthetic and ((position == 0 and index > 0)
                                       or (position > 0 and index < last)):
                continue
            by_frame.setdefault(keyframe.frame, keyframe)
    return [by_frame[f] for f in sorted(by_frame)]


def _join(chain: Sequence[Track], successors: dict[int, Track]) -> Track:
    head = chain[0]
    shapes = _join_shapes(chain)
    elements: list[Track] = []
    linked: set[int] = set()
    for element in head.elements:
        element_chain = [element]
        while element_chain[-1].id in successors and len(element_chain) < len(chain):
            nxt = successors[element_chain[-1].id]
            if nxt.id in linked:
                break
            element_chain.append(nxt)
            linked.add(nxt.id)  # type: ignore[arg-type]
        elements.append(_join(element_chain, {}) if len(element_chain) > 1 else element)
    for piece in chain[1:]:
        elements.extend(e for e in piece.elements if e.id not in linked)
    frame = min([s.frame for s in shapes] or [head.frame])
    return replace(head, frame=frame, shapes=shapes, elements=elements)


def _fold_tracks(parts: list[tuple[JobPart, list[Track]]], view: TaskView) -> list[Track]:
    by_id: dict[int, tuple[Track, JobPart]] = {}
    for part, tracks in parts:
        for track in tracks:
            by_id[track.id] = (track, part)  # type: ignore[index]
            for element in track.elements:
                by_id[element.id] = (element, part)  # type: ignore[index]
    successors: dict[int, Track] = {}
    for track, part in by_id.values():
        previous = by_id.get(track.continues_id) if track.continues_id is not None else None
        if (previous is not None and previous[1].job_id != part.job_id
                and previous[0].id not in successors):
            successors[previous[0].id] = track  # type: ignore[index]
    continuing = {t.id for t in successors.values()}
    shown: list[Track] = []
    for _part, tracks in parts:
        for track in tracks:
            if track.id in continuing:
                continue
            chain = [track]
            seen = {track.id}
            while chain[-1].id in successors and successors[chain[-1].id].id not in seen:
                chain.append(successors[chain[-1].id])
                seen.add(chain[-1].id)
            view.rows[("track", track.id)] = [
                (by_id[p.id][1].job_id, p.id) for p in chain  # type: ignore[index,misc]
            ]
            shown.append(_join(chain, successors) if len(chain) > 1 else track)
    return shown


def merge_jobs(parts: Iterable[tuple[JobPart, LabeledData]]) -> TaskView:
    """The task's view of its annotation jobs' data (objects are shared, not copied).

    The version is the sum of the jobs' versions: it changes whenever any job changes.
    """
    ordered = _ordered(parts)
    view = TaskView(LabeledData(version=sum(d.version for _, d in ordered)))
    view.data.tags = _fold("tag", [(p, d.tags) for p, d in ordered], tag_key, view)
    view.data.shapes = _fold("shape", [(p, d.shapes) for p, d in ordered], shape_key, view)
    view.data.tracks = _fold_tracks([(p, d.tracks) for p, d in ordered], view)
    view.data.tags.sort(key=lambda t: (t.frame, t.id or 0))
    view.data.shapes.sort(key=lambda s: (s.frame, s.id or 0))
    view.data.tracks.sort(key=lambda t: t.id or 0)
    return view


def _copy_shape(shape: Shape) -> Shape:
    return replace(shape, points=list(shape.points), attributes=list(shape.attributes),
                   elements=[_copy_shape(e) for e in shape.elements])


def distribute(data: LabeledData, parts: Sequence[JobPart]) -> dict[int, LabeledData]:
    """Split a task-level write into the jobs (CVAT's ``data.slice(start, stop)`` per job).

    A tag or shape goes to every job that shows its frame; a track is cut into one piece
    per job it is visible in, each piece linked (``continues``) to the piece in the
    previous job.  Copies keep the input's ids; the caller decides which copy may keep
    them.  Jobs are returned in order (earlier jobs first).
    """
    ordered = sorted(parts, key=lambda p: (p.start, p.job_id))
    out = {p.job_id: LabeledData() for p in ordered}
    for tag in data.tags:
        for part in ordered:
            if tag.frame in part.frames:
                out[part.job_id].tags.append(replace(tag, attributes=list(tag.attributes)))
    for shape in data.shapes:
        for part in ordered:
            if shape.frame in part.frames:
                out[part.job_id].shapes.append(_copy_shape(shape))
    for track in data.tracks:
        previous: Track | None = None
        for part in ordered:
            piece = slice_track(track, part.start, part.stop)
            if piece is None:
                continue
            if previous is not None:
                piece.continues = previous
                for element, before in zip(piece.elements, previous.elements, strict=False):
                    element.continues = before
            out[part.job_id].tracks.append(piece)
            previous = piece
    return out
