"""Task creation through the real cvat-sdk and cvat-cli against a live framesvc.

Media is generated here (small PNG images, a short H.264 clip); what the server stored
is read back through the API and, where the API has no field for it (image order,
storage), from the server's SQLite store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mediagen
import pytest
from authutil import basic, call, register, unique
from cvat_sdk.core.exceptions import BackgroundRequestException
from cvat_sdk.core.proxies.tasks import ResourceType
from mediagen import write_image, write_video

if TYPE_CHECKING:  # conftest is not importable when another conftest.py shadows it
    from conftest import LiveServer

POLL = 0.05


@pytest.fixture
def client(sdk_client):  # type: ignore[no-untyped-def]
    sdk_client.config.status_check_period = POLL
    return sdk_client


def admin(server: LiveServer) -> dict[str, str]:
    return basic(server.admin_user, server.admin_password)


def api(server: LiveServer, method: str, path: str, **kwargs: Any) -> Any:
    headers = {**admin(server), **kwargs.pop("headers", {})}
    return call(server, method, path, headers=headers, **kwargs)


def db(server: LiveServer, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    from conftest import db_rows

    return db_rows(server, sql, params)


def image_names(server: LiveServer, task_id: int) -> list[str]:
    return [
        r[0]
        for r in db(
            server,
            "SELECT images.path FROM images JOIN tasks ON tasks.data_id = images.data_id "
            "WHERE tasks.id = ? ORDER BY images.frame",
            (task_id,),
        )
    ]


def job_ranges(task: Any) -> list[tuple[int, int, int]]:
    return sorted((j.start_frame, j.stop_frame, j.frame_count) for j in task.get_jobs())


def new_task(server: LiveServer, name: str, **spec: Any) -> int:
    reply = api(server, "POST", "/api/tasks",
                body={"name": name, "labels": [{"name": "car"}], **spec})
    assert reply.status == 201, reply.raw
    return int(reply.json["id"])


def test_image_task_sizes_chunks_and_jobs(client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = make_images(tmp_path, 10, size=(64, 48))
    task = client.tasks.create_from_data(
        spec={"name": "images", "labels": [{"name": "car"}], "segment_size": 4, "overlap": 1},
        resources=files,
        data_params={"image_quality": 70},
    )
    assert task.size == 10
    assert task.mode == "annotation"
    assert task.data_compressed_chunk_type == "imageset"
    assert task.data_original_chunk_type == "imageset"
    assert task.image_quality == 70
    # 64x48: max(2, min(72, 36*1920*1080 // (64*48))) = 72
    assert task.data_chunk_size == 72
    # segment_size 4, overlap 1: starts range(0, 10 - 1, 3) -> 0, 3, 6
    assert job_ranges(task) == [(0, 3, 4), (3, 6, 4), (6, 9, 4)]
    assert image_names(server, task.id) == sorted(p.name for p in files)


def test_video_task_sizes_chunks_and_jobs(client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    video = make_video(tmp_path / "clip.mp4", frames=30, size=(64, 48))
    task = client.tasks.create_from_data(
        spec={"name": "video", "labels": [{"name": "car"}], "segment_size": 10},
        resources=[video],
        data_params={"image_quality": 50},
    )
    assert task.size == 30
    assert task.mode == "interpolation"
    assert task.data_compressed_chunk_type == "video"
    assert task.data_original_chunk_type == "video"
    assert task.data_chunk_size == 36
    # Video default overlap 5 (capped at seg // 2 = 5): starts 0, 5, 10, 15, 20.
    assert job_ranges(task) == [(0, 9, 10), (5, 14, 10), (10, 19, 10), (15, 24, 10),
                                (20, 29, 10)]
    rows = db(server, "SELECT v.frame_count, v.width, v.height FROM videos v "
                      "JOIN tasks t ON t.data_id = v.data_id WHERE t.id = ?", (task.id,))
    assert rows == [(30, 64, 48)]


def test_video_with_zip_chunks_and_explicit_chunk_size(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    video = make_video(tmp_path / "clip.mp4", frames=12, size=(64, 48))
    task = client.tasks.create_from_data(
        spec={"name": "zipvideo", "labels": [{"name": "car"}]},
        resources=[video],
        data_params={"image_quality": 70, "use_zip_chunks": True, "chunk_size": 5},
    )
    assert task.data_compressed_chunk_type == "imageset"
    assert task.data_original_chunk_type == "video"
    assert task.data_chunk_size == 5
    assert job_ranges(task) == [(0, 11, 12)]


def test_start_stop_step(client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = make_images(tmp_path, 20, size=(32, 24))
    task = client.tasks.create_from_data(
        spec={"name": "step", "labels": [{"name": "car"}]},
        resources=files,
        data_params={"image_quality": 70, "start_frame": 2, "stop_frame": 15, "frame_step": 3},
    )
    # Frames 2, 5, 8, 11, 14 of the 20 sources.
    assert task.size == 5
    data = db(server, "SELECT d.start_frame, d.stop_frame, d.frame_filter, d.size FROM data d "
                      "JOIN tasks t ON t.data_id = d.id WHERE t.id = ?", (task.id,))
    assert data == [(2, 14, "step=3", 5)]
    assert job_ranges(task) == [(0, 4, 5)]
    # Every source image is recorded at its absolute position.
    assert len(image_names(server, task.id)) == 20


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("lexicographical", ["img_1.png", "img_10.png", "img_2.png", "img_b.png"]),
        ("natural", ["img_1.png", "img_2.png", "img_10.png", "img_b.png"]),
        ("predefined", ["img_b.png", "img_10.png", "img_1.png", "img_2.png"]),
    ],
)
def test_sorting_methods(client, server, tmp_path, method, expected) -> None:  # type: ignore[no-untyped-def]
    names = ["img_b.png", "img_10.png", "img_1.png", "img_2.png"]
    files = make_images(tmp_path, len(names), size=(16, 16), names=names)
    task = client.tasks.create_from_data(
        spec={"name": f"sort-{method}", "labels": [{"name": "car"}]},
        resources=files,
        data_params={"image_quality": 70, "sorting_method": method},
    )
    assert image_names(server, task.id) == expected
    row = db(server, "SELECT d.sorting_method FROM data d JOIN tasks t ON t.data_id = d.id "
                     "WHERE t.id = ?", (task.id,))
    assert row == [(method,)]


def test_random_sorting_is_a_permutation(client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = make_images(tmp_path, 12, size=(16, 16))
    task = client.tasks.create_from_data(
        spec={"name": "random", "labels": [{"name": "car"}]},
        resources=files,
        data_params={"image_quality": 70, "sorting_method": "random"},
    )
    assert sorted(image_names(server, task.id)) == sorted(p.name for p in files)


def test_job_file_mapping(client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = make_images(tmp_path, 6, size=(16, 16))
    names = [p.name for p in files]
    mapping = [[names[4], names[0]], [names[1], names[2], names[3]], [names[5]]]
    task = client.tasks.create_from_data(
        spec={"name": "mapping", "labels": [{"name": "car"}]},
        resources=files,
        data_params={"image_quality": 70, "job_file_mapping": mapping},
    )
    assert task.size == 6
    assert job_ranges(task) == [(0, 1, 2), (2, 4, 3), (5, 5, 1)]
    assert image_names(server, task.id) == [n for job in mapping for n in job]


def test_job_file_mapping_conflicts_are_400(server) -> None:
    task_id = new_task(server, "mapping-conflict", segment_size=2)
    reply = api(server, "POST", f"/api/tasks/{task_id}/data/",
                body={"image_quality": 70, "server_files": ["x.png"],
                      "job_file_mapping": [["x.png"]]})
    assert reply.status == 400
    assert reply.json == ["job_file_mapping cannot be used with segment_size"]
    task_id = new_task(server, "mapping-conflict-2")
    reply = api(server, "POST", f"/api/tasks/{task_id}/data/",
                body={"image_quality": 70, "job_file_mapping": [["a.png"], ["a.png"]]})
    assert reply.status == 400
    assert "cannot be used multiple times" in reply.json["job_file_mapping"][0]


def test_server_files(client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    share = server.share_root / unique("share")
    files = make_images(share, 5, size=(40, 30))
    rel = [str(p.relative_to(server.share_root)) for p in files]
    task = client.tasks.create_from_data(
        spec={"name": "share", "labels": [{"name": "car"}], "segment_size": 3},
        resources=rel,
        resource_type=ResourceType.SHARE,
        data_params={"image_quality": 70},
    )
    assert task.size == 5
    assert job_ranges(task) == [(0, 2, 3), (3, 4, 2)]
    rows = db(server, "SELECT d.storage, d.root FROM data d JOIN tasks t ON t.data_id = d.id "
                      "WHERE t.id = ?", (task.id,))
    assert rows == [("share", str(server.share_root.resolve()))]
    assert image_names(server, task.id) == sorted(rel)
    # Read in place: nothing was copied into the task's media directory.
    assert not list((server.data_dir / "tasks" / str(task.id)).rglob("*.png"))


def test_server_files_copy_data_and_directory(client, server) -> None:  # type: ignore[no-untyped-def]
    folder = unique("dir")
    make_images(server.share_root / folder, 4, size=(40, 30))
    task = client.tasks.create_from_data(
        spec={"name": "share-copy", "labels": [{"name": "car"}]},
        resources=[folder + "/"],
        resource_type=ResourceType.SHARE,
        data_params={"image_quality": 70, "copy_data": True},
    )
    assert task.size == 4
    rows = db(server, "SELECT d.storage FROM data d JOIN tasks t ON t.data_id = d.id "
                      "WHERE t.id = ?", (task.id,))
    assert rows == [("local",)]
    assert len(list((server.data_dir / "tasks" / str(task.id) / "raw").rglob("*.png"))) == 4


@pytest.mark.parametrize("path", ["../outside.png", "/etc/passwd", "a/../../outside.png",
                                  "escape-link/x.png"])
def test_server_files_outside_the_share_are_400(server, tmp_path, path) -> None:
    outside = tmp_path / "outside"
    make_images(outside, 1, size=(8, 8), names=["x.png"])
    link = server.share_root / "escape-link"
    if not link.exists():
        link.symlink_to(outside, target_is_directory=True)
    task_id = new_task(server, "escape")
    reply = api(server, "POST", f"/api/tasks/{task_id}/data/",
                body={"image_quality": 70, "server_files": [path]})
    assert reply.status == 400, reply.raw
    assert "server_files" in reply.json
    # Nothing was started: the task can still be given data.
    assert api(server, "GET", f"/api/requests/create:task-{task_id}").status == 404


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "image_quality", "This field is required."),
        ({"image_quality": 0}, "image_quality",
         "Ensure this value is greater than or equal to 1."),
        ({"image_quality": 101}, "image_quality",
         "Ensure this value is less than or equal to 100."),
        ({"image_quality": "high"}, "image_quality", "A valid integer is required."),
        ({"image_quality": 70, "chunk_size": 0}, "chunk_size",
         "Chunk size must be a positive integer"),
        ({"image_quality": 70, "start_frame": -1}, "start_frame",
         "Ensure this value is greater than or equal to 0."),
        ({"image_quality": 70, "frame_filter": "every=2"}, "frame_filter",
         "Invalid frame filter expression"),
        ({"image_quality": 70, "sorting_method": "size"}, "sorting_method",
         '"size" is not a valid choice.'),
        ({"image_quality": 70, "use_zip_chunks": "maybe"}, "use_zip_chunks",
         "Must be a valid boolean."),
        ({"image_quality": 70, "job_file_mapping": "a.png"}, "job_file_mapping",
         'Expected a list of items but got type "str".'),
        ({"image_quality": 70, "remote_files": ["http://example.com/a.png"]}, "remote_files",
         None),
        ({"image_quality": 70, "filename_pattern": "*.png"}, "filename_pattern", None),
        ({"image_quality": 70, "validation_params": {"mode": "gt"}}, "validation_params", None),
    ],
)
def test_parameter_validation(server, body, field, message) -> None:
    task_id = new_task(server, "validation")
    reply = api(server, "POST", f"/api/tasks/{task_id}/data/", body=body,
                headers={"Upload-Finish": ""})
    assert reply.status == 400, reply.raw
    assert field in reply.json
    if message is not None:
        assert reply.json[field] == [message]


def test_start_after_stop_is_400(server) -> None:
    task_id = new_task(server, "start-stop")
    reply = api(server, "POST", f"/api/tasks/{task_id}/data/",
                body={"image_quality": 70, "start_frame": 5, "stop_frame": 2})
    assert reply.status == 400
    assert reply.json == ["Stop frame must be more or equal start frame"]


def test_adding_more_data_is_400(client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = make_images(tmp_path, 2, size=(16, 16))
    task = client.tasks.create_from_data(
        spec={"name": "once", "labels": [{"name": "car"}]},
        resources=files, data_params={"image_quality": 70},
    )
    for headers in ({"Upload-Start": ""}, {"Upload-Finish": ""}, {}):
        reply = api(server, "POST", f"/api/tasks/{task.id}/data/",
                    body={"image_quality": 70}, headers=headers)
        assert reply.status == 400
        assert reply.json == ["Adding more data is not supported"]


def test_upload_statuses_are_exact(server, tmp_path) -> None:
    """202 / 200 / 202 + rq_id, checked by the SDK with expect_status."""
    task_id = new_task(server, "statuses")
    url = f"/api/tasks/{task_id}/data/"
    assert api(server, "POST", url, headers={"Upload-Start": ""}).status == 202
    png = make_images(tmp_path, 1, size=(16, 16))[0]
    boundary = "xYzBoundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image_quality\"\r\n\r\n70\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"client_files[0]\"; "
        f"filename=\"{png}\"\r\nContent-Type: image/png\r\n\r\n"
    ).encode() + png.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    reply = api(server, "POST", url, raw_body=body,
                headers={"Upload-Multiple": "",
                         "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert reply.status == 200, reply.raw
    reply = api(server, "POST", url, body={"image_quality": 70}, headers={"Upload-Finish": ""})
    assert reply.status == 202
    rq_id = reply.json["rq_id"]
    assert rq_id == f"create:task-{task_id}"
    status = wait_request(server, rq_id)
    assert status["status"] == "finished", status
    assert status["result_id"] == task_id


def wait_request(server: LiveServer, rq_id: str, timeout: float = 60) -> dict[str, Any]:
    import time
    from urllib.parse import quote

    deadline = time.monotonic() + timeout
    while True:
        reply = api(server, "GET", f"/api/requests/{quote(rq_id, safe='')}")
        assert reply.status == 200, reply.raw
        if reply.json["status"] in ("finished", "failed") or time.monotonic() > deadline:
            return reply.json
        time.sleep(0.05)


def test_request_json_and_visibility(client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = make_images(tmp_path, 3, size=(16, 16))
    task = client.tasks.create_from_data(
        spec={"name": "request-json", "labels": [{"name": "car"}]},
        resources=files, data_params={"image_quality": 70},
    )
    rq_id = f"create:task-{task.id}"
    body = api(server, "GET", f"/api/requests/{rq_id.replace(':', '%3A')}").json
    assert body["id"] == rq_id
    assert body["status"] == "finished"
    assert body["message"] == ""
    assert body["progress"] == 1.0
    assert body["operation"]["type"] == "create:task"
    assert body["operation"]["target"] == "task"
    assert body["operation"]["task_id"] == task.id
    assert body["result_id"] == task.id
    assert body["result_url"] is None
    assert body["owner"]["username"] == server.admin_user
    for key in ("created_date", "started_date", "finished_date"):
        assert body[key].endswith("Z")
    assert body["started_date"] <= body["finished_date"]
    # The SDK's own model accepts it.
    request, _ = client.api_client.requests_api.retrieve(rq_id)
    assert request.status.value == "finished"

    listed = api(server, "GET", "/api/requests?page_size=all").json
    assert rq_id in [r["id"] for r in listed["results"]]

    # Another user sees neither the request nor it in the list.
    name = unique()
    assert register(server, name).status == 201
    other = basic(name, "pass-Word-123")
    assert call(server, "GET", f"/api/requests/{rq_id}", headers=other).status == 404
    theirs = call(server, "GET", "/api/requests", headers=other).json
    assert rq_id not in [r["id"] for r in theirs["results"]]
    assert call(server, "GET", "/api/requests/nope", headers=admin(server)).status == 404


def test_other_users_cannot_upload(server) -> None:
    task_id = new_task(server, "private")
    name = unique()
    assert register(server, name).status == 201
    reply = call(server, "POST", f"/api/tasks/{task_id}/data/",
                 body={"image_quality": 70}, headers=basic(name, "pass-Word-123"))
    assert reply.status == 404


def test_sdk_failure_is_background_request_exception(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "notes.txt"
    bad.write_text("not media")
    with pytest.raises(BackgroundRequestException) as info:
        client.tasks.create_from_data(
            spec={"name": "bad", "labels": [{"name": "car"}]},
            resources=[bad], data_params={"image_quality": 70},
        )
    assert "notes.txt" in str(info.value)


def cvat_cli(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).with_name("cvat-cli")
    return subprocess.run(
        [str(cli), "--server-host", "http://127.0.0.1", "--server-port", str(server.port),
         "--auth", f"{server.admin_user}:{server.admin_password}", *args],
        capture_output=True, text=True, timeout=180,
    )


def test_cvat_cli_task_create_and_ls(server, tmp_path) -> None:
    files = make_images(tmp_path, 7, size=(48, 32))
    name = unique("cli")
    done = cvat_cli(server, "task", "create", name, "local", *map(str, files),
                    "--labels", json.dumps([{"name": "car"}]), "--segment_size", "3",
                    "--image_quality", "60", "--frame_step", "2",
                    "--completion_verification_period", "0.1")
    assert done.returncode == 0, done.stderr
    task_id = int(done.stdout.strip().splitlines()[-1])
    task = api(server, "GET", f"/api/tasks/{task_id}").json
    assert task["name"] == name
    assert task["size"] == 4  # frames 0, 2, 4, 6
    assert task["image_quality"] == 60
    jobs = api(server, "GET", f"/api/jobs?task_id={task_id}&page_size=all").json["results"]
    assert sorted((j["start_frame"], j["stop_frame"]) for j in jobs) == [(0, 2), (3, 3)]

    listed = cvat_cli(server, "task", "ls")
    assert listed.returncode == 0, listed.stderr
    assert str(task_id) in listed.stdout.split()


# -- thin wrappers over the shared generators in tests/mediagen.py ------------------------


def make_images(
    folder: Path, count: int, *, size: tuple[int, int], names: list[str] | None = None
) -> list[Path]:
    """``count`` numbered pattern images in ``folder`` (``img_000.png``... by default)."""
    names = names or [f"img_{i:03d}.png" for i in range(count)]
    return [write_image(folder / name, i, size) for i, name in enumerate(names[:count])]


def make_video(path: Path, *, frames: int, size: tuple[int, int]) -> Path:
    return write_video(path, codec="libx264", frames=frames, size=size)


def related_rows(server: LiveServer, task_id: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for image, related in db(
        server,
        "SELECT i.path, r.path FROM images i JOIN tasks t ON t.data_id = i.data_id "
        "LEFT JOIN related_files r ON r.image_id = i.id WHERE t.id = ? ORDER BY i.frame, r.path",
        (task_id,),
    ):
        out.setdefault(image, [])
        if related is not None:
            out[image].append(related)
    return out


def test_archive_with_context_images(client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tree = mediagen.related_tree(tmp_path)
    archive = mediagen.zip_of_tree(tree, tmp_path / "scenes.zip")
    task = client.tasks.create_from_data(
        spec={"name": "related", "labels": [{"name": "car"}]},
        resources=[archive], data_params={"image_quality": 70},
    )
    assert task.size == len(mediagen.RELATED_TREE_SCENES)
    assert related_rows(server, task.id) == mediagen.RELATED_TREE_SCENES
    raw = server.data_dir / "tasks" / str(task.id) / "raw"
    assert not (raw / "scenes.zip").exists()  # extracted, then dropped
    assert (raw / "scene" / "a.png").is_file()


def test_share_directory_with_context_images_in_place(client, server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = server.share_root / unique("tree")
    tree = mediagen.related_tree(base)
    prefix = tree.relative_to(server.share_root).as_posix() + "/"
    task = client.tasks.create_from_data(
        spec={"name": "related-share", "labels": [{"name": "car"}]},
        resources=[prefix], resource_type=ResourceType.SHARE,
        data_params={"image_quality": 70},
    )
    expected = {prefix + scene: [prefix + r for r in related]
                for scene, related in mediagen.RELATED_TREE_SCENES.items()}
    assert related_rows(server, task.id) == expected


@pytest.mark.parametrize(
    ("headers", "raw_body", "body"),
    [
        ({"Upload-Multiple": "", "Content-Type": "multipart/form-data"}, b"junk", None),
        ({"Upload-Multiple": "", "Content-Type": "multipart/form-data; boundary=x"},
         b"--x\r\nbroken", None),
        ({"Upload-Multiple": "", "Content-Type": "application/json"}, b"{}", None),
        ({"Upload-Finish": "", "Content-Type": "application/json"}, b"[1, 2]", None),
        ({"Upload-Finish": "", "Content-Type": "application/json"}, b"{bad", None),
        ({"Upload-Finish": ""}, None,
         {"image_quality": 70, "chunk_size": 10**40, "start_frame": "9" * 500}),
        ({}, None, {"image_quality": 70, "server_files": ["a" * 5000]}),
        ({}, None, {"image_quality": 70, "server_files": ["a\x00b"]}),
        ({"Upload-Length": "-5"}, None, None),
        ({"Upload-Length": "5", "Upload-Metadata": "filename !!!"}, None, None),
    ],
)
def test_malformed_requests_are_400(server, headers, raw_body, body) -> None:
    task_id = new_task(server, "malformed")
    reply = api(server, "POST", f"/api/tasks/{task_id}/data/", headers=headers,
                raw_body=raw_body, body=body)
    assert reply.status == 400, reply.raw
