"""Ingest failures: each ends the request ``failed`` naming the file, leaves nothing behind,
and the same task then accepts a valid upload."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mediagen
import pytest
from authutil import basic, call
from conftest import LiveServer, db_execute, db_rows, start_server, stop_server
from cvat_sdk.core.exceptions import BackgroundRequestException
from mediagen import write_image, write_video

POLL = 0.05


@pytest.fixture
def client(sdk_client):  # type: ignore[no-untyped-def]
    sdk_client.config.status_check_period = POLL
    return sdk_client


def rows(server: LiveServer, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return db_rows(server, sql, params)


def _mixed(d: Path) -> tuple[list[Path], str]:
    return [make_video(d / "clip.mp4", frames=5, size=(32, 24)),
            *make_images(d, 2, size=(16, 16))], "clip.mp4"


def _two_videos(d: Path) -> tuple[list[Path], str]:
    return [make_video(d / "one.mp4", frames=5, size=(32, 24)),
            make_video(d / "two.mp4", frames=5, size=(32, 24))], ".mp4"


def _not_media(d: Path) -> tuple[list[Path], str]:
    return [*make_images(d, 1, size=(16, 16)), mediagen.not_media(d, "notes.txt")], "notes.txt"


def _empty_file(d: Path) -> tuple[list[Path], str]:
    (d / "empty.png").write_bytes(b"")
    return [*make_images(d, 1, size=(16, 16)), d / "empty.png"], "empty.png"


def _corrupt_image(d: Path) -> tuple[list[Path], str]:
    return [*make_images(d, 1, size=(16, 16)), mediagen.corrupt_jpeg(d)], "corrupt.jpg"


def _truncated_jpeg(d: Path) -> tuple[list[Path], str]:
    return [*make_images(d, 1, size=(16, 16)), mediagen.truncated_jpeg(d)], "truncated.jpg"


def _truncated_video(d: Path) -> tuple[list[Path], str]:
    return [mediagen.truncated_mp4(d / "v", faststart=False)], "truncated_plain.mp4"


def _only(make: Callable[[Path], Path]) -> Callable[[Path], tuple[list[Path], str]]:
    def case(d: Path) -> tuple[list[Path], str]:
        path = make(d)
        return [path], path.name

    return case


CASES: dict[str, Callable[[Path], tuple[list[Path], str]]] = {
    "mixed video and images": _mixed,
    "two videos": _two_videos,
    "a non-media file": _not_media,
    "an empty file": _empty_file,
    "a corrupt image": _corrupt_image,
    "a truncated jpeg": _truncated_jpeg,
    "a truncated video": _truncated_video,
    "a zip escaping its folder": _only(mediagen.zip_slip),
    "a zip with an absolute path": _only(mediagen.zip_absolute),
    "a zip with a symlink": _only(mediagen.zip_symlink),
    "a tar escaping its folder": _only(mediagen.tar_slip),
    "a tar with a hard link": _only(mediagen.tar_hardlink),
    "a zip bomb": _only(mediagen.zip_bomb),
}


def assert_no_leftovers(server: LiveServer, task_id: int) -> None:
    assert rows(server, "SELECT data_id, mode FROM tasks WHERE id = ?", (task_id,)) == [(None, "")]
    assert rows(server, "SELECT COUNT(*) FROM segments WHERE task_id = ?", (task_id,)) == [(0,)]
    assert rows(server, "SELECT COUNT(*) FROM upload_files WHERE task_id = ?", (task_id,)) == [(0,)]
    assert not (server.data_dir / "tasks" / str(task_id)).exists()
    assert not any((server.data_dir / "uploads" / str(task_id)).glob("*"))
    for escaped in ("evil.txt", "framesvc_evil.txt"):
        assert not (server.data_dir / "tasks" / escaped).exists()
        assert not (server.data_dir / "tasks" / str(task_id) / escaped).exists()
    assert not Path("/tmp/framesvc_evil.txt").exists()


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
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    db_execute(
        server,
        "INSERT INTO requests (id, status, message, progress, operation_type, target, "
        "task_id, owner_id, created_date, started_date) VALUES (?, 'started', '', 0.3, "
        "'create:task', 'task', ?, 1, ?, ?)",
        (f"create:task-{task_id}", task_id, created, created + dt.timedelta(seconds=1)),
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


# -- thin wrappers over the shared generators in tests/mediagen.py ------------------------


def make_images(
    folder: Path, count: int, *, size: tuple[int, int], names: list[str] | None = None
) -> list[Path]:
    """``count`` numbered pattern images in ``folder`` (``img_000.png``... by default)."""
    names = names or [f"img_{i:03d}.png" for i in range(count)]
    return [write_image(folder / name, i, size) for i, name in enumerate(names[:count])]


def make_video(path: Path, *, frames: int, size: tuple[int, int]) -> Path:
    return write_video(path, codec="libx264", frames=frames, size=size)
