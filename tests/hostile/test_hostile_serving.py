"""Media that turns bad after ingest: a frame that cannot be decoded when it is served
is a clear 4xx naming the file and frame, is not cached, and the next request (for a good
frame, or the same one once the file is repaired) works.

The index is built from packets at ingest (``framesvc/media/probe.py``), so a video whose
sample table lists more frames than its data decodes passes ingest; these tests make such
files both ways: uploaded already damaged, and damaged on disk after a clean ingest.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

import hostilemedia as hm
import mediagen
import numpy as np
import pytest
from hostileutil import api, no_server_errors
from mediagen import read_frame_number
from PIL import Image

POLL = 0.05
#: The status of "this frame of the task's media cannot be decoded".
UNDECODABLE = 422


@pytest.fixture
def client(sdk_client):  # type: ignore[no-untyped-def]
    sdk_client.config.status_check_period = POLL
    return sdk_client


def _raw_file(server: Any, task_id: int, name: str) -> Path:
    found = list((server.data_dir / "tasks" / str(task_id)).rglob(name))
    assert len(found) == 1, found
    return found[0]


def _frame(server: Any, task_id: int, number: int, quality: str = "original") -> Any:
    return api(server, "GET",
               f"/api/tasks/{task_id}/data?type=frame&number={number}&quality={quality}")


def _chunk(server: Any, task_id: int, index: int, quality: str = "compressed") -> Any:
    return api(server, "GET",
               f"/api/tasks/{task_id}/data?type=chunk&number={index}&quality={quality}")


def _frame_number(data: bytes) -> int:
    return read_frame_number(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def _assert_undecodable(reply: Any, name: str) -> None:
    assert reply.status == UNDECODABLE, (reply.status, reply.raw[:300])
    message = reply.json
    assert isinstance(message, str) and name in message and "cannot" in message, message
    assert "/tasks/" not in message, message  # no server paths


def _video_task(client: Any, path: Path, chunk_size: int = 6) -> Any:
    task = client.tasks.create({"name": f"serving {path.name}", "labels": [{"name": "a"}]})
    task.upload_data(resources=[path], params={"image_quality": 70, "chunk_size": chunk_size})
    task.fetch()
    return task


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", ["zeros", "garbled"])
def test_video_damaged_before_upload(client, server, tmp_path, damage) -> None:  # type: ignore[no-untyped-def]
    """Frames 12..23 are listed but undecodable: ingest accepts the file (packets only),
    frames and chunks of the damaged GOPs are 4xx, the intact ones are served exactly."""
    src = hm.h264(tmp_path / "src", frames=24, gop=6)
    broken = tmp_path / f"{damage}.mp4"
    (hm.zero_samples if damage == "zeros" else hm.garble_samples)(src, 12, broken)
    with no_server_errors(server):
        task = _video_task(client, broken)
        assert task.size == 24
        for number in (0, 5, 11):
            reply = _frame(server, task.id, number)
            assert reply.status == 200 and _frame_number(reply.raw) == number
        for number in (12, 23):
            reply = _frame(server, task.id, number)
            if damage == "zeros":
                _assert_undecodable(reply, broken.name)
            else:  # a decoder may conceal garbage as a (wrong) picture; never a 5xx
                assert reply.status in (200, UNDECODABLE), reply.raw[:300]
                if reply.status == UNDECODABLE:
                    _assert_undecodable(reply, broken.name)
        assert _chunk(server, task.id, 0).status == 200
        if damage == "zeros":
            _assert_undecodable(_chunk(server, task.id, 3), broken.name)
            _assert_undecodable(_chunk(server, task.id, 2, "original"), broken.name)
        # The same failing request fails the same way (nothing half-built was cached).
        if damage == "zeros":
            _assert_undecodable(_frame(server, task.id, 20), broken.name)
        assert _chunk(server, task.id, 1).status == 200


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", ["zeros", "truncated", "emptied"])
def test_video_damaged_on_disk_after_ingest(client, server, tmp_path, damage) -> None:  # type: ignore[no-untyped-def]
    """The stored file changes under a finished task: 4xx for what cannot be decoded,
    and once the file is put back, the very same requests succeed (no error was cached)."""
    src = hm.h264(tmp_path, "clip.mp4", frames=24, gop=6)
    with no_server_errors(server):
        task = _video_task(client, src)
        stored = _raw_file(server, task.id, "clip.mp4")
        backup = tmp_path / "backup.mp4"
        shutil.copyfile(stored, backup)
        if damage == "zeros":
            hm.zero_samples(stored, 12)
        elif damage == "truncated":
            data = stored.read_bytes()
            cut = hm.mp4_sample_ranges(backup)[12][0]
            stored.write_bytes(data[:cut])
        else:
            stored.write_bytes(b"")

        late = _frame(server, task.id, 18)
        _assert_undecodable(late, "clip.mp4")
        _assert_undecodable(_chunk(server, task.id, 3), "clip.mp4")
        if damage != "emptied":
            early = _frame(server, task.id, 2)
            assert early.status == 200 and _frame_number(early.raw) == 2

        shutil.copyfile(backup, stored)
        again = _frame(server, task.id, 18)
        assert again.status == 200 and _frame_number(again.raw) == 18
        assert _chunk(server, task.id, 3).status == 200


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", ["garbage", "truncated", "emptied", "text"])
def test_image_damaged_on_disk_after_ingest(client, server, tmp_path, damage) -> None:  # type: ignore[no-untyped-def]
    files = [mediagen.write_image(tmp_path / f"img_{i}.jpg", i, (64, 48), "RGB", "JPEG",
                                  quality=90) for i in range(4)]
    with no_server_errors(server):
        task = client.tasks.create({"name": f"image {damage}", "labels": [{"name": "a"}]})
        task.upload_data(resources=files, params={"image_quality": 70, "chunk_size": 2})
        stored = _raw_file(server, task.id, "img_3.jpg")
        data = stored.read_bytes()
        stored.write_bytes({
            "garbage": bytes(range(256)) * 8,
            "truncated": data[: len(data) // 3],
            "emptied": b"",
            "text": b"not an image\n" * 10,
        }[damage])

        bad = _frame(server, task.id, 3, "compressed")
        if damage == "truncated":
            # Pillow decodes what is there (as CVAT accepts truncated JPEGs).
            assert bad.status in (200, UNDECODABLE), bad.raw[:300]
        else:
            _assert_undecodable(bad, "img_3.jpg")
            _assert_undecodable(_chunk(server, task.id, 1), "img_3.jpg")
        good = _frame(server, task.id, 0, "compressed")
        assert good.status == 200 and _frame_number(good.raw) == 0
        chunk = _chunk(server, task.id, 0)
        assert chunk.status == 200
        assert len(zipfile.ZipFile(io.BytesIO(chunk.raw)).namelist()) == 2
