"""Helpers shared by the media endpoint tests: tasks with generated media, raw requests,
direct store edits (ground-truth segments, data versions) and ``/metrics`` readings.

Everything talks to a real ``framesvc serve`` (``conftest.server``); store edits go
through framesvc's own store functions on the server's SQLite file, as a second process
would.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
from authutil import Reply, basic, call
from conftest import LiveServer, db_execute, db_rows
from mediagen import write_image, write_video
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

SIZE = (64, 48)


def admin(server: LiveServer) -> dict[str, str]:
    return basic(server.admin_user, server.admin_password)


def get(server: LiveServer, path: str, headers: dict[str, str] | None = None) -> Reply:
    return call(server, "GET", path, headers={**admin(server), **(headers or {})})


def api(server: LiveServer, method: str, path: str, **kwargs: Any) -> Reply:
    headers = {**admin(server), **kwargs.pop("headers", {})}
    return call(server, method, path, headers=headers, **kwargs)


# --- media and tasks ---------------------------------------------------------------------


def images(directory: Path, count: int, size: tuple[int, int] = SIZE, *, fmt: str = "PNG",
           start: int = 0) -> list[Path]:
    """``count`` pattern images ``img_NNN.<ext>`` showing numbers ``start``...``"""
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    return [write_image(directory / f"img_{i:03d}.{ext}", i, size, "RGB", fmt)
            for i in range(start, start + count)]


def video(path: Path, frames: int, size: tuple[int, int] = SIZE, gop: int = 6) -> Path:
    """H.264 MP4 of pattern frames 0..frames-1 with a fixed GOP (no B-frames)."""
    options = {"preset": "veryfast",
               "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"}
    return write_video(path, codec="libx264", frames=frames, size=size, options=options)


def create_task(client: Any, files: Sequence[Path], *, name: str = "media",
                **data_params: Any) -> Any:
    spec = {"name": name, "labels": [{"name": "car"}]}
    for key in ("segment_size", "overlap"):
        if key in data_params:
            spec[key] = data_params.pop(key)
    data_params.setdefault("image_quality", 80)
    client.config.status_check_period = 0.05
    return client.tasks.create_from_data(spec=spec, resources=list(files),
                                         data_params=data_params)


def jobs_of(task: Any) -> list[Any]:
    """The task's annotation jobs ordered by start frame."""
    found = [j for j in task.get_jobs() if j.type == "annotation"]
    return sorted(found, key=lambda j: (j.start_frame, j.id))


# --- decoding ------------------------------------------------------------------------------


def zip_entries(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def decode_image(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def decode_mp4(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


#: Lowest acceptable PSNR (dB) of a lossy frame against its source pattern.  The
#: patterns have saturated red/blue edges that 4:2:0 JPEG/H.264 blur (q80 gives ~30 dB
#: at 64x48); a wrong frame scores below 15 dB.
PSNR_MIN = 25.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# --- the server's store ----------------------------------------------------------------------


def db(server: LiveServer, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return db_rows(server, sql, params)


def db_write(server: LiveServer, sql: str, params: tuple[Any, ...] = ()) -> None:
    db_execute(server, sql, params)


def add_gt_job(server: LiveServer, task_id: int, rel_frames: Sequence[int]) -> int:
    """A ground-truth job over task-relative ``rel_frames``, written with framesvc's own
    ``create_segments_and_jobs`` (``POST /api/jobs`` belongs to a later issue)."""
    from framesvc.model.frames import FrameSpace, parse_frame_filter
    from framesvc.model.segments import SegmentSpec
    from framesvc.store.db import create_engine
    from framesvc.store.jobs import create_segments_and_jobs

    ((start, stop, frame_filter),) = db(
        server, "SELECT data.start_frame, data.stop_frame, data.frame_filter FROM data "
        "JOIN tasks ON tasks.data_id = data.id WHERE tasks.id = ?", (task_id,))
    space = FrameSpace(start, stop, parse_frame_filter(frame_filter))
    spec = SegmentSpec.specific(space.size, [space.to_abs(f) for f in rel_frames])

    async def write() -> int:
        engine = create_engine(server.database_url)
        try:
            async with engine.begin() as conn:
                (job_id,) = await create_segments_and_jobs(conn, task_id, [spec])
        finally:
            await engine.dispose()
        return int(job_id)

    return asyncio.run(write())


def bump_data_version(server: LiveServer, task_id: int) -> None:
    db_write(server, "UPDATE data SET version = version + 1 WHERE id = "
             "(SELECT data_id FROM tasks WHERE id = ?)", (task_id,))


# --- metrics -----------------------------------------------------------------------------------


def metrics(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = call(server, "GET", "/metrics")
    assert reply.status == 200, reply.raw
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(reply.raw.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metric(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)
