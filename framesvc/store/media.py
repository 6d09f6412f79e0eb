"""Rows that describe a task's media: ``data``, ``images``, ``related_files``, ``videos``.

The ingest writes them once, inside its single transaction (so a failed ingest leaves
none); the media endpoints read them back.  Paths are stored relative to
``data.root`` with forward slashes, exactly as ``data/meta`` reports frame names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from framesvc.store.schema import data, images, related_files, videos


@dataclass(frozen=True)
class DataRecord:
    chunk_size: int
    size: int
    image_quality: int
    start_frame: int
    stop_frame: int
    frame_filter: str
    compressed_chunk_type: str
    original_chunk_type: str
    sorting_method: str
    media_type: str
    root: str
    created_date: dt.datetime
    storage_method: str = "cache"
    storage: str = "local"
    deleted_frames: list[int] = field(default_factory=list)
    version: int = 1


@dataclass(frozen=True)
class ImageRecord:
    """One source image; ``frame`` is its absolute position in the sorted list."""

    frame: int
    path: str
    width: int
    height: int
    orientation: int = 1
    format: str = ""
    mode: str = ""
    #: Context images of this frame, relative to the data root, sorted.
    related: tuple[str, ...] = ()


@dataclass(frozen=True)
class VideoRecord:
    path: str
    file_size: int
    frame_count: int
    width: int
    height: int
    fps: float
    rotation: int
    codec: str
    pix_fmt: str
    stream_index: int
    time_base_num: int
    time_base_den: int
    index_blob: bytes
    index_method: str


#: Rows per INSERT statement; keeps statements under SQLite's variable limit.
_BATCH = 500


async def insert_data(conn: AsyncConnection, record: DataRecord) -> int:
    result = await conn.execute(
        sa.insert(data).values(
            chunk_size=record.chunk_size,
            size=record.size,
            image_quality=record.image_quality,
            start_frame=record.start_frame,
            stop_frame=record.stop_frame,
            frame_filter=record.frame_filter,
            compressed_chunk_type=record.compressed_chunk_type,
            original_chunk_type=record.original_chunk_type,
            storage_method=record.storage_method,
            storage=record.storage,
            sorting_method=record.sorting_method,
            media_type=record.media_type,
            root=record.root,
            version=record.version,
            deleted_frames=list(record.deleted_frames),
            created_date=record.created_date,
        )
    )
    return int(result.inserted_primary_key[0])


async def insert_images(
    conn: AsyncConnection, data_id: int, records: Sequence[ImageRecord]
) -> None:
    """Insert image rows and, linked to them, their related (context) files."""
    for start in range(0, len(records), _BATCH):
        batch = records[start : start + _BATCH]
        await conn.execute(
            sa.insert(images),
            [
                {
                    "data_id": data_id,
                    "frame": r.frame,
                    "path": r.path,
                    "width": r.width,
                    "height": r.height,
                    "orientation": r.orientation,
                    "format": r.format,
                    "mode": r.mode,
                }
                for r in batch
            ],
        )
    with_related = [r for r in records if r.related]
    if not with_related:
        return
    ids = {
        frame: image_id
        for image_id, frame in await conn.execute(
            sa.select(images.c.id, images.c.frame).where(images.c.data_id == data_id)
        )
    }
    rows = [
        {"data_id": data_id, "image_id": ids[r.frame], "path": path}
        for r in with_related
        for path in r.related
    ]
    for start in range(0, len(rows), _BATCH):
        await conn.execute(sa.insert(related_files), rows[start : start + _BATCH])


async def insert_video(conn: AsyncConnection, data_id: int, record: VideoRecord) -> None:
    await conn.execute(
        sa.insert(videos).values(
            data_id=data_id,
            path=record.path,
            file_size=record.file_size,
            frame_count=record.frame_count,
            width=record.width,
            height=record.height,
            fps=record.fps,
            rotation=record.rotation,
            codec=record.codec,
            pix_fmt=record.pix_fmt,
            stream_index=record.stream_index,
            time_base_num=record.time_base_num,
            time_base_den=record.time_base_den,
            index_blob=record.index_blob,
            index_method=record.index_method,
        )
    )


async def get_data(conn: AsyncConnection, data_id: int) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(data).where(data.c.id == data_id))).first()


async def get_images(
    conn: AsyncConnection, data_id: int, frames: Sequence[int] | None = None
) -> list[sa.Row[Any]]:
    """Image rows ordered by frame; only the given absolute ``frames`` if provided."""
    query = sa.select(images).where(images.c.data_id == data_id).order_by(images.c.frame)
    if frames is not None:
        query = query.where(images.c.frame.in_(list(frames)))
    return list((await conn.execute(query)).all())


async def get_related_files(
    conn: AsyncConnection, data_id: int, image_ids: Sequence[int] | None = None
) -> dict[int, list[str]]:
    """Context file paths per image id, sorted by path (CVAT's order)."""
    query = (
        sa.select(related_files.c.image_id, related_files.c.path)
        .where(related_files.c.data_id == data_id)
        .order_by(related_files.c.image_id, related_files.c.path)
    )
    if image_ids is not None:
        query = query.where(related_files.c.image_id.in_(list(image_ids)))
    out: dict[int, list[str]] = {}
    for image_id, path in await conn.execute(query):
        out.setdefault(image_id, []).append(path)
    return out


async def get_video(conn: AsyncConnection, data_id: int) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(videos).where(videos.c.data_id == data_id))).first()
