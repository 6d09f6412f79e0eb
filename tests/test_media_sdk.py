"""The media endpoints through the real cvat-sdk 2.80: what its helpers get back decodes
to the right frames, sizes and counts."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LiveServer
from cvat_sdk import Client, Config
from mediaapi import (
    PSNR_MIN,
    SIZE,
    create_task,
    decode_image,
    decode_mp4,
    images,
    jobs_of,
    psnr,
    video,
    zip_entries,
)
from mediagen import frame_pattern, read_frame_number
from PIL import Image


@pytest.fixture(scope="module")
def client(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = Config(cache_dir=tmp_path_factory.mktemp("sdk_cache"), status_check_period=0.05)
    with Client(server.url, config=config) as c:
        c.login((server.admin_user, server.admin_password))
        yield c


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media_sdk")


@pytest.fixture(scope="module")
def image_task(client: Any, folder: Path) -> Any:
    """9 JPEG frames, chunks of 4, jobs [0, 4] and [5, 8]."""
    return create_task(client, images(folder / "img", 9, fmt="JPEG"), name="sdk-images",
                       segment_size=5, chunk_size=4)


@pytest.fixture(scope="module")
def video_task(client: Any, folder: Path) -> Any:
    """16 H.264 frames, chunks of 6, one job."""
    return create_task(client, [video(folder / "clip.mp4", 16)], name="sdk-video",
                       chunk_size=6)


def check_frame(data: bytes, frame: int) -> None:
    picture = decode_image(data)
    assert picture.shape == (SIZE[1], SIZE[0], 3)
    assert read_frame_number(picture) == frame
    assert psnr(picture, frame_pattern(frame, SIZE)) > PSNR_MIN


def test_job_helpers(client: Any, image_task: Any, folder: Path) -> None:
    first, second = (client.jobs.retrieve(j.id) for j in jobs_of(image_task))
    meta = second.get_meta()
    assert (meta.start_frame, meta.stop_frame, meta.size, meta.chunk_size) == (5, 8, 4, 4)
    assert [f.name for f in meta.frames] == [f"img_{i:03d}.jpg" for i in range(5, 9)]
    assert meta.deleted_frames == []

    compressed = second.get_frame(6, quality="compressed").read()
    check_frame(compressed, 6)
    original = second.get_frame(6, quality="original").read()
    assert original == (folder / "img" / "img_006.jpg").read_bytes()

    with Image.open(first.get_preview()) as preview:
        assert preview.format == "JPEG"
        assert preview.size == SIZE
        assert read_frame_number(preview.convert("RGB")) == 0

    out = folder / "frames"
    second.download_frames([5, 8], outdir=out, quality="original")
    saved = sorted(out.iterdir())
    assert len(saved) == 2
    for path, frame in zip(saved, (5, 8), strict=True):
        check_frame(path.read_bytes(), frame)


def test_retrieve_data_chunks(client: Any, image_task: Any) -> None:
    first = jobs_of(image_task)[0]
    api = client.api_client.jobs_api
    for index, frames, quality in ((0, range(4), "compressed"), (1, [4], "original")):
        _, response = api.retrieve_data(first.id, type="chunk", index=index, quality=quality,
                                        _parse_response=False)
        assert response.status == 200
        entries = zip_entries(response.data)
        assert len(entries) == len(frames)
        suffix = ".jpeg" if quality == "compressed" else ".jpg"
        assert all(name.endswith(suffix) for name, _ in entries)
        for (_, data), frame in zip(entries, frames, strict=True):
            check_frame(data, frame)
    _, response = api.retrieve_data(first.id, type="chunk", number=1, quality="compressed",
                                    _parse_response=False)
    assert [read_frame_number(decode_image(d)) for _, d in zip_entries(response.data)] == [4]


def test_task_helpers(client: Any, image_task: Any, folder: Path) -> None:
    task = client.tasks.retrieve(image_task.id)
    check_frame(task.get_frame(7).read(), 7)  # no quality: the server's default, compressed
    for number, count in ((0, 4), (2, 1)):
        buffer = io.BytesIO()
        task.download_chunk(number, buffer, quality="original")
        entries = zip_entries(buffer.getvalue())
        assert len(entries) == count
        for position, (name, data) in enumerate(entries):
            frame = number * 4 + position
            assert name == f"{position:06d}.jpg"
            assert data == (folder / "img" / f"img_{frame:03d}.jpg").read_bytes()
    with Image.open(task.get_preview()) as preview:
        assert read_frame_number(preview.convert("RGB")) == 0


def test_task_dataset(client: Any, image_task: Any) -> None:
    """``cvat_sdk.datasets`` reads meta and original chunks (``infolist()[frame % cs]``)."""
    from cvat_sdk.datasets import TaskDataset

    dataset = TaskDataset(client, image_task.id, load_annotations=False)
    samples = list(dataset.samples)
    assert len(samples) == 9
    for index, sample in enumerate(samples):
        picture = sample.media.load_image()
        assert read_frame_number(picture.convert("RGB")) == index


def test_video_task_helpers(client: Any, video_task: Any) -> None:
    task = client.tasks.retrieve(video_task.id)
    assert task.data_original_chunk_type == "video"
    for quality in ("compressed", "original"):
        data = task.get_frame(9, quality=quality).read()
        assert Image.open(io.BytesIO(data)).format == "PNG"
        check_frame(data, 9)
    buffer = io.BytesIO()
    task.download_chunk(2, buffer, quality="original")
    decoded = decode_mp4(buffer.getvalue())
    assert [read_frame_number(p) for p in decoded] == [12, 13, 14, 15]
    assert all(p.shape == (SIZE[1], SIZE[0], 3) for p in decoded)

    job = client.jobs.retrieve(jobs_of(task)[0].id)
    meta = job.get_meta()
    assert len(meta.frames) == 1
    assert (meta.frames[0].width, meta.frames[0].height) == SIZE
    _, response = client.api_client.jobs_api.retrieve_data(
        job.id, type="chunk", index=1, quality="compressed", _parse_response=False)
    decoded = decode_mp4(response.data)
    assert [read_frame_number(p) for p in decoded] == list(range(6, 12))
    for picture, frame in zip(decoded, range(6, 12), strict=True):
        assert psnr(picture, frame_pattern(frame, SIZE)) > PSNR_MIN
    check_frame(job.get_frame(15, quality="compressed").read(), 15)
