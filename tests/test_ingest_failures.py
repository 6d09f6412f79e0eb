"""Ingest failures: each ends the request ``failed`` naming the file, leaves nothing behind,
and the same task then accepts a valid upload."""

from __future__ import annotations

import io
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from authutil import basic, call
from conftest import LiveServer, start_server, stop_server
from cvat_sdk.core.exceptions import BackgroundRequestException

POLL = 0.05


@pytest.fixture
def client(sdk_client):  # type: ignore[no-untyped-def]
    sdk_client.config.status_check_period = POLL
    return sdk_client


def rows(server: LiveServer, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{server.data_dir / 'framesvc.sqlite3'}?mode=ro", uri=True) as c:
        return list(c.execute(sql, params))


def _mixed(d: Path) -> tuple[list[Path], str]:
    return [make_video(d / "clip.mp4", frames=5, size=(32, 24)),
            *make_images(d, 2, size=(16, 16))], "clip.mp4"


def _two_videos(d: Path) -> tuple[list[Path], str]:
    return [make_video(d / "one.mp4", frames=5, size=(32, 24)),
            make_video(d / "two.mp4", frames=5, size=(32, 24))], ".mp4"


def _not_media(d: Path) -> tuple[list[Path], str]:
    (d / "notes.txt").write_text("this is not an image")
    return [*make_images(d, 1, size=(16, 16)), d / "notes.txt"], "notes.txt"


def _empty_file(d: Path) -> tuple[list[Path], str]:
    (d / "empty.png").write_bytes(b"")
    return [*make_images(d, 1, size=(16, 16)), d / "empty.png"], "empty.png"


def _corrupt_image(d: Path) -> tuple[list[Path], str]:
    (d / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    return [*make_images(d, 1, size=(16, 16)), d / "garbage.png"], "garbage.png"


def _truncated_jpeg(d: Path) -> tuple[list[Path], str]:
    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((64, 48), 50).convert("RGB").save(buf, "JPEG", quality=90)
    (d / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return [*make_images(d, 1, size=(16, 16)), d / "cut.jpg"], "cut.jpg"


def _truncated_video(d: Path) -> tuple[list[Path], str]:
    video = make_video(d / "full.mp4", frames=30, size=(64, 48))
    data = video.read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 3])
    return [d / "cut.mp4"], "cut.mp4"


def _path_traversal_zip(d: Path) -> tuple[list[Path], str]:
    png = make_images(d / "src", 1, size=(16, 16))[0].read_bytes()
    with zipfile.ZipFile(d / "evil.zip", "w") as zf:
        zf.writestr("ok.png", png)
        zf.writestr("../escaped.png", png)
    return [d / "evil.zip"], "escaped.png"


def _zip_bomb(d: Path) -> tuple[list[Path], str]:
    with zipfile.ZipFile(d / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.png", b"\0" * (64 * 2**20))
    return [d / "bomb.zip"], "bomb.zip"


CASES: dict[str, Callable[[Path], tuple[list[Path], str]]] = {
    "mixed video and images": _mixed,
    "two videos": _two_videos,
    "a non-media file": _not_media,
    "an empty file": _empty_file,
    "a corrupt image": _corrupt_image,
    "a truncated jpeg": _truncated_jpeg,
    "a truncated video": _truncated_video,
    "an archive escaping its folder": _path_traversal_zip,
    "a zip bomb": _zip_bomb,
}


def assert_no_leftovers(server: LiveServer, task_id: int) -> None:
    assert rows(server, "SELECT data_id, mode FROM tasks WHERE id = ?", (task_id,)) == [(None, "")]
    assert rows(server, "SELECT COUNT(*) FROM segments WHERE task_id = ?", (task_id,)) == [(0,)]
    assert rows(server, "SELECT COUNT(*) FROM upload_files WHERE task_id = ?", (task_id,)) == [(0,)]
    assert not (server.data_dir / "tasks" / str(task_id)).exists()
    assert not any((server.data_dir / "uploads" / str(task_id)).glob("*"))
    assert not (server.share_root.parent / "escaped.png").exists()


@pytest.mark.parametrize("case", list(CASES))
def test_failure_names_the_file_then_a_valid_upload_works(client, server, tmp_path, case) -> None:  # type: ignore[no-untyped-def]
    bad_files, named = CASES[case](tmp_path)
    task = client.tasks.create({"name": f"fail: {case}", "labels": [{"name": "a"}]})
    with pytest.raises(BackgroundRequestException) as info:
        task.upload_data(resources=bad_files, params={"image_quality": 70})
    assert named in str(info.value)

    reply = call(server, "GET", f"/api/requests/create:task-{task.id}",
                 headers=basic(server.admin_user, server.admin_password)).json
    assert reply["status"] == "failed"
    assert reply["message"] == str(info.value)
    assert 0.0 <= reply["progress"] <= 1.0
    assert_no_leftovers(server, task.id)

    good = make_images(tmp_path / "good", 3, size=(16, 16))
    task.upload_data(resources=good, params={"image_quality": 70})
    task.fetch()
    assert task.size == 3
    assert len(task.get_jobs()) == 1


def test_empty_upload_fails(client, server) -> None:  # type: ignore[no-untyped-def]
    task = client.tasks.create({"name": "nothing", "labels": [{"name": "a"}]})
    headers = basic(server.admin_user, server.admin_password)
    url = f"/api/tasks/{task.id}/data/"
    assert call(server, "POST", url, headers={**headers, "Upload-Start": ""}).status == 202
    reply = call(server, "POST", url, body={"image_quality": 70},
                 headers={**headers, "Upload-Finish": ""})
    assert reply.status == 202
    with pytest.raises(BackgroundRequestException, match="No media data found"):
        client.wait_for_completion(reply.json["rq_id"], status_check_period=POLL)
    assert_no_leftovers(server, task.id)


def test_interrupted_request_is_failed_after_restart(tmp_path) -> None:
    """A request a killed process left "started" is failed at start and its files removed."""
    root = tmp_path / "srv"
    server = start_server(root)
    try:
        headers = basic(server.admin_user, server.admin_password)
        task_id = call(server, "POST", "/api/tasks", headers=headers,
                       body={"name": "interrupted", "labels": [{"name": "a"}]}).json["id"]
    finally:
        stop_server(server)
    # What a crash in the middle of an ingest leaves: a started request, half-placed
    # files in the task's media directory and a session file.
    raw = root / "data" / "tasks" / str(task_id) / "raw"
    raw.mkdir(parents=True)
    (raw / "half.png").write_bytes(b"partial")
    session = root / "data" / "uploads" / str(task_id)
    session.mkdir(parents=True)
    (session / "00000000-0000-0000-0000-000000000001").write_bytes(b"x")
    with sqlite3.connect(root / "data" / "framesvc.sqlite3") as c:
        c.execute(
            "INSERT INTO requests (id, status, message, progress, operation_type, target, "
            "task_id, owner_id, created_date, started_date) VALUES (?, 'started', '', 0.3, "
            "'create:task', 'task', ?, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:01')",
            (f"create:task-{task_id}", task_id),
        )

    server = start_server(root)
    try:
        headers = basic(server.admin_user, server.admin_password)
        reply = call(server, "GET", f"/api/requests/create:task-{task_id}", headers=headers)
        assert reply.json["status"] == "failed"
        assert "restart" in reply.json["message"]
        assert reply.json["finished_date"] is not None
        assert not raw.exists()
        assert not session.exists()

        from cvat_sdk import make_client

        with make_client(server.url, credentials=(server.admin_user,
                                                  server.admin_password)) as client:
            client.config.status_check_period = POLL
            task = client.tasks.retrieve(task_id)
            task.upload_data(resources=make_images(tmp_path / "ok", 2, size=(16, 16)),
                             params={"image_quality": 70})
            task.fetch()
            assert task.size == 2
    finally:
        stop_server(server)


# -- media generated in the test (small PNGs, a short H.264 clip) ---------------------------


def make_images(
    folder: Path, count: int, *, size: tuple[int, int], names: list[str] | None = None
) -> list[Path]:
    """``count`` distinct PNG images of ``size`` in ``folder`` (``img_000.png``... by default)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"img_{i:03d}.png" for i in range(count)]
    paths = []
    for i, name in enumerate(names[:count]):
        path = folder / name
        Image.new("RGB", size, ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(path)
        paths.append(path)
    return paths


def make_video(path: Path, *, frames: int, size: tuple[int, int], fps: int = 25) -> Path:
    """An H.264 MP4 of ``frames`` frames whose colour changes every frame."""
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "10", "preset": "ultrafast"}
        for i in range(frames):
            array = np.full((size[1], size[0], 3), (i * 8) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
