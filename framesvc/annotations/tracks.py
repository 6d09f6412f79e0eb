"""Tracks: CVAT's frame normalisation on save, the state of a track at a frame, slicing.

A track is a list of keyframes; between two keyframes the object is interpolated, after
an ``outside`` keyframe it is hidden until the next keyframe.

* :func:`normalize_tracks` is what CVAT does before saving tracks
  (``JobAnnotation._sync_frames``): a track's ``frame`` becomes its first keyframe's
  frame, or, when the track claims to start earlier, an ``outside`` copy of the first
  keyframe is added at the track's frame (for skeletons the first keyframe is moved
  there instead); element tracks never start after their skeleton, and a skeleton
  starts no later than its earliest element.
* :func:`state_at` interpolates: linearly (points and rotation) between two visible
  keyframes of the same type and point count, which is CVAT's interpolation for
  rectangles, ellipses, cuboids and points; polygons and polylines whose point counts
  differ, masks and skeleton keyframes hold the previous keyframe instead (CVAT resamples
  polygon outlines; that is not reproduced).
* :func:`slice_track` cuts a task-level track to one job's frame range, as CVAT's
  ``AnnotationIR._slice_track`` does when a task-level write is split into jobs: the
  keyframes inside the range, the interpolated state at the range's first frame when
  the object is already visible there, and at its last frame when the object moves on
  to a keyframe beyond the range (both marked synthetic, so the task view can leave
  them out when it joins the pieces again), or an ``outside`` keyframe right after the
  range if the track has one there.  An outside keyframe that follows another outside
  keyframe is kept only where it falls into a job the object is visible in (elsewhere
  it changes nothing that can be seen).
"""

from __future__ import annotations

from dataclasses import replace

from framesvc.annotations.model import Track, TrackedShape


def _sorted(shapes: list[TrackedShape]) -> list[TrackedShape]:
    return sorted(shapes, key=lambda s: s.frame)


def _correct_frame(track: Track) -> None:
    shapes = _sorted(track.shapes)
    if not shapes:
        return
    first = shapes[0]
    if track.frame < first.frame:
        if first.type == "skeleton":
            first.frame = track.frame
        else:
            missing = replace(first, id=None, frame=track.frame, outside=True,
                              points=list(first.points), attributes=list(first.attributes))
            track.shapes.append(missing)
    elif first.frame < track.frame:
        track.frame = first.frame


def _sync(tracks: list[Track], parent: Track | None) -> None:
    if not tracks:
        return
    min_frame = tracks[0].frame
    for track in tracks:
        if parent is not None and parent.frame < track.frame:
            track.frame = parent.frame
        _correct_frame(track)
        min_frame = min(min_frame, track.frame)
    if parent is None or min_frame >= parent.frame:
        return
    # A skeleton cannot start after its elements: move it (and its first keyframe) back.
    parent_shapes = _sorted(parent.shapes)
    parent.frame = min_frame
    if parent_shapes:
        parent_shapes[0].frame = min_frame
    for track in tracks:
        if parent.frame < track.frame:
            track.frame = parent.frame
            _correct_frame(track)


def normalize_tracks(tracks: list[Track]) -> None:
    """CVAT's frame corrections before saving, in place (parents before elements)."""
    _sync(tracks, None)
    for track in tracks:
        _sync(track.elements, track)


def _interpolate(a: TrackedShape, b: TrackedShape, frame: int) -> list[float] | None:
    if (a.type != b.type or len(a.points) != len(b.points)
            or a.type in ("mask", "skeleton") or b.outside):
        return None
    t = (frame - a.frame) / (b.frame - a.frame)
    return [p + (q - p) * t for p, q in zip(a.points, b.points, strict=True)]


def state_at(track: Track, frame: int) -> TrackedShape | None:
    """The object at ``frame`` (interpolated, without an id), or None before the track."""
    shapes = _sorted(track.shapes)
    before = [s for s in shapes if s.frame <= frame]
    if not before:
        return None
    prev = before[-1]
    if prev.frame == frame:
        return replace(prev, id=None, points=list(prev.points),
                       attributes=list(prev.attributes))
    state = replace(prev, id=None, frame=frame, points=list(prev.points),
                    attributes=list(prev.attributes))
    if prev.outside:
        return state
    after = [s for s in shapes if s.frame > frame]
    if after:
        points = _interpolate(prev, after[0], frame)
        if points is not None:
            t = (frame - prev.frame) / (after[0].frame - prev.frame)
            state.points = points
            state.rotation = prev.rotation + (after[0].rotation - prev.rotation) * t
    return state


def slice_track(track: Track, start: int, stop: int) -> Track | None:
    """The part of ``track`` a job showing frames ``start..stop`` keeps (ids kept).

    None when the object is never visible in the range.  Keyframes made up here (the
    state at ``start`` when the object is already visible there, the state at ``stop``
    when it moves on to a later keyframe) are marked ``synthetic``.  Element tracks are
    sliced the same way; an element with nothing in the range keeps no keyframes.
    """
    shapes = _sorted(track.shapes)
    inside = [replace(s, points=list(s.points), attributes=list(s.attributes))
              for s in shapes if start <= s.frame <= stop]
    if not any(s.frame == start for s in inside):
        carried = state_at(track, start)
        if carried is not None and not carried.outside:
            carried.synthetic = True
            inside.insert(0, carried)
    # A track never starts with an outside keyframe (CVAT drops leading ones).
    while inside and inside[0].outside:
        inside.pop(0)
    later = [s for s in shapes if s.frame > stop]
    if inside and later:
        if later[0].frame == stop + 1 and later[0].outside:
            inside.append(replace(later[0], points=list(later[0].points),
                                  attributes=list(later[0].attributes)))
        elif inside[-1].frame != stop and not inside[-1].outside:
            trailing = state_at(track, stop)
            if trailing is not None and not trailing.outside:
                trailing.synthetic = True
                inside.append(trailing)
    parts = [slice_track(element, start, stop) for element in track.elements]
    if not inside and all(p is None for p in parts):
        return None
    # A skeleton is in the job when it or one of its elements is visible there.
    frame = inside[0].frame if inside else min(p.frame for p in parts if p is not None)
    elements = [p if p is not None else replace(e, frame=frame, shapes=[], elements=[])
                for p, e in zip(parts, track.elements, strict=True)]
    return replace(track, frame=frame, shapes=inside, elements=elements,
                   attributes=list(track.attributes), continues=None)
