"""TUS 1.0 on ``/api/tasks/{id}/data/``: the protocol by hand, and a >100 MiB file via the SDK."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from authutil import basic, call
from mediagen import write_image

if TYPE_CHECKING:  # conftest is not importable when another conftest.py shadows it
    from conftest import LiveServer

POLL = 0.05


def admin(server: LiveServer) -> dict[str, str]:
    return basic(server.admin_user, server.admin_password)


def api(server: LiveServer, method: str, path: str, **kwargs: Any) -> Any:
    headers = {**admin(server), **kwargs.pop("headers", {})}
    return call(server, method, path, headers=headers, **kwargs)


def new_task(server: LiveServer, name: str) -> int:
    reply = api(server, "POST", "/api/tasks", body={"name": name, "labels": [{"name": "a"}]})
    assert reply.status == 201, reply.raw
    return int(reply.json["id"])


def metadata(filename: str) -> str:
    return "filename " + base64.b64encode(filename.encode()).decode()


def tus_create(server: LiveServer, task_id: int, filename: str, length: int) -> Any:
    return api(server, "POST", f"/api/tasks/{task_id}/data/",
               headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(length),
                        "Upload-Metadata": metadata(filename),
                        "Content-Type": "application/json"})


def patch(server: LiveServer, location: str, offset: int, body: bytes,
          content_type: str = "application/offset+octet-stream") -> Any:
    path = location.split(server.url, 1)[1]
    return api(server, "PATCH", path, raw_body=body,
               headers={"Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                        "Content-Type": content_type})


def head(server: LiveServer, location: str) -> Any:
    return api(server, "HEAD", location.split(server.url, 1)[1],
               headers={"Tus-Resumable": "1.0.0"})


def test_tus_protocol_by_hand(server, tmp_path) -> None:
    task_id = new_task(server, "tus-by-hand")
    from PIL import Image

    png = tmp_path / "frame.png"
    Image.effect_noise((64, 48), 60).convert("RGB").save(png)
    data = png.read_bytes()
    assert len(data) > 1000
    assert api(server, "POST", f"/api/tasks/{task_id}/data/",
               headers={"Upload-Start": ""}).status == 202

    created = tus_create(server, task_id, "/client/side/frame.png", len(data))
    assert created.status == 201, created.raw
    location = created.headers["Location"]
    assert location.startswith(f"{server.url}/api/tasks/{task_id}/data/")
    assert created.headers["Upload-Filename"] == "frame.png"
    assert created.headers["Tus-Resumable"] == "1.0.0"

    assert head(server, location).headers["Upload-Offset"] == "0"
    assert head(server, location).headers["Upload-Length"] == str(len(data))

    # Wrong offset: 409 with the real offset; wrong content type: 415.
    conflict = patch(server, location, 5, data[:10])
    assert conflict.status == 409
    assert conflict.headers["Upload-Offset"] == "0"
    assert patch(server, location, 0, data[:10], "application/json").status == 415

    first = patch(server, location, 0, data[:100])
    assert first.status == 204, first.raw
    assert first.headers["Upload-Offset"] == "100"
    assert head(server, location).headers["Upload-Offset"] == "100"

    # More than the declared length is refused; what fitted is not lost.
    too_much = patch(server, location, 100, data[100:] + b"extra")
    assert too_much.status == 413
    assert head(server, location).headers["Upload-Offset"] == str(len(data))

    finished = api(server, "POST", f"/api/tasks/{task_id}/data/",
                   body={"image_quality": 70}, headers={"Upload-Finish": ""})
    assert finished.status == 202, finished.raw
    status = wait(server, finished.json["rq_id"])
    assert status["status"] == "finished", status
    task = api(server, "GET", f"/api/tasks/{task_id}").json
    assert task["size"] == 1
    stored = server.data_dir / "tasks" / str(task_id) / "raw" / "frame.png"
    assert stored.read_bytes() == data
    # The session is consumed: its upload URL is gone.
    assert head(server, location).status == 404


def test_tus_refusals(server) -> None:
    task_id = new_task(server, "tus-refusals")
    url = f"/api/tasks/{task_id}/data/"
    bad_name = tus_create(server, task_id, "..", 10)
    assert bad_name.status == 400
    no_name = api(server, "POST", url, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"})
    assert no_name.status == 400
    bad_length = api(server, "POST", url, headers={"Tus-Resumable": "1.0.0",
                                                   "Upload-Length": "ten",
                                                   "Upload-Metadata": metadata("a.png")})
    assert bad_length.status == 400
    wrong_version = api(server, "POST", url, headers={"Tus-Resumable": "0.2.2",
                                                      "Upload-Length": "10",
                                                      "Upload-Metadata": metadata("a.png")})
    assert wrong_version.status == 412
    huge = tus_create(server, task_id, "huge.mp4", 10**15)
    assert huge.status == 413
    unknown = api(server, "HEAD", f"{url}00000000-0000-0000-0000-000000000000")
    assert unknown.status == 404
    options = api(server, "OPTIONS", url)
    assert options.status == 204
    assert options.headers["Tus-Version"] == "1.0.0"

    # A file of a name already in the session is a conflict once complete.
    first = tus_create(server, task_id, "same.png", 3)
    assert patch(server, first.headers["Location"], 0, b"abc").status == 204
    assert tus_create(server, task_id, "same.png", 3).status == 409
    # Finishing with an incomplete TUS upload is refused.
    assert tus_create(server, task_id, "partial.png", 10).status == 201
    reply = api(server, "POST", url, body={"image_quality": 70}, headers={"Upload-Finish": ""})
    assert reply.status == 400
    assert reply.json == ["The upload of partial.png is not complete"]


def test_upload_start_drops_an_unfinished_session(server) -> None:
    task_id = new_task(server, "tus-restart")
    created = tus_create(server, task_id, "left.png", 10)
    assert created.status == 201
    assert api(server, "POST", f"/api/tasks/{task_id}/data/",
               headers={"Upload-Start": ""}).status == 202
    assert head(server, created.headers["Location"]).status == 404
    assert not any((server.data_dir / "uploads" / str(task_id)).glob("*"))


@pytest.mark.slow
def test_big_file_goes_through_tus(sdk_client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A >100 MiB file is sent by the SDK over TUS in 10 MiB PATCHes; it must arrive whole."""
    from PIL import Image

    big = tmp_path / "big.bmp"
    # 6000 x 6000 RGB, uncompressed: ~103 MiB, over the SDK's 100 MiB multipart limit.
    Image.new("RGB", (6000, 6000), (10, 120, 200)).save(big)
    assert big.stat().st_size > 100 * 2**20
    small = make_images(tmp_path, 2, size=(16, 16))
    sdk_client.config.status_check_period = POLL
    task = sdk_client.tasks.create_from_data(
        spec={"name": "big", "labels": [{"name": "a"}]},
        resources=[big, *small],
        data_params={"image_quality": 70, "sorting_method": "predefined"},
    )
    assert task.size == 3
    stored = server.data_dir / "tasks" / str(task.id) / "raw" / "big.bmp"
    assert stored.stat().st_size == big.stat().st_size
    log = server.log_path.read_text(errors="replace")
    assert "TUS upload" in log and f"for task {task.id}: big.bmp" in log
    # Multipart files come first in the task, then TUS ones (CVAT's order), unless the
    # client asks for its own order: the SDK sends upload_file_order with "predefined".
    from conftest import db_rows

    names = [r[0] for r in db_rows(
        server, "SELECT i.path FROM images i JOIN tasks t ON t.data_id = i.data_id "
        "WHERE t.id = ? ORDER BY i.frame", (task.id,))]
    sizes = db_rows(
        server, "SELECT i.width, i.height FROM images i JOIN tasks t ON t.data_id = i.data_id "
        "WHERE t.id = ? AND i.path = 'big.bmp'", (task.id,))
    assert names == ["big.bmp", *(p.name for p in small)]
    assert sizes == [(6000, 6000)]


def wait(server: LiveServer, rq_id: str, timeout: float = 60) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while True:
        reply = api(server, "GET", f"/api/requests/{rq_id}")
        assert reply.status == 200, reply.raw
        if reply.json["status"] in ("finished", "failed") or time.monotonic() > deadline:
            return reply.json
        time.sleep(POLL)


# -- thin wrappers over the shared generators in tests/mediagen.py ------------------------


def make_images(
    folder: Path, count: int, *, size: tuple[int, int], names: list[str] | None = None
) -> list[Path]:
    """``count`` numbered pattern images in ``folder`` (``img_000.png``... by default)."""
    names = names or [f"img_{i:03d}.png" for i in range(count)]
    return [write_image(folder / name, i, size) for i, name in enumerate(names[:count])]

