"""``framesvc ingest``: a task straight into the live server's store, visible through the API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from authutil import basic, call
from mediagen import write_image, write_video

if TYPE_CHECKING:  # conftest is not importable when another conftest.py shadows it
    from conftest import LiveServer


def ingest(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framesvc.cli", "ingest", *args,
         "--data-dir", str(server.data_dir), "--owner", server.admin_user, "--quiet"],
        capture_output=True, text=True, timeout=120, env=server.env,
    )


def get(server: LiveServer, path: str) -> dict:  # type: ignore[type-arg]
    reply = call(server, "GET", path, headers=basic(server.admin_user, server.admin_password))
    assert reply.status == 200, reply.raw
    return reply.json


def test_ingest_images_prints_ids_and_the_api_shows_them(server, tmp_path) -> None:
    files = make_images(tmp_path, 9, size=(40, 30))
    done = ingest(server, *map(str, files), "--name", "from the cli",
                  "--labels", json.dumps([{"name": "car"}, {"name": "person"}]),
                  "--segment-size", "4", "--overlap", "1", "--chunk-size", "3")
    assert done.returncode == 0, done.stderr
    task_line, *job_lines = done.stdout.strip().splitlines()
    task_id = int(re.match(r"task (\d+):", task_line).group(1))  # type: ignore[union-attr]
    printed = [tuple(map(int, re.match(r"job (\d+): frames (\d+)-(\d+)", line).groups()))  # type: ignore[union-attr]
               for line in job_lines]

    task = get(server, f"/api/tasks/{task_id}")
    assert task["name"] == "from the cli"
    assert task["size"] == 9
    assert task["data_chunk_size"] == 3
    assert task["owner"]["username"] == server.admin_user
    jobs = get(server, f"/api/jobs?task_id={task_id}&page_size=all")["results"]
    assert sorted((j["id"], j["start_frame"], j["stop_frame"]) for j in jobs) == sorted(printed)
    # segment 4, overlap 1: starts range(0, 8, 3) -> [0-3], [3-6], [6-8]
    assert sorted((s, e) for _, s, e in printed) == [(0, 3), (3, 6), (6, 8)]
    labels = get(server, f"/api/labels?task_id={task_id}")["results"]
    assert sorted(label["name"] for label in labels) == ["car", "person"]
    # The files were copied, not moved.
    assert all(p.exists() for p in files)


def test_ingest_video_with_step(server, tmp_path) -> None:
    video = make_video(tmp_path / "clip.mp4", frames=20, size=(64, 48))
    done = ingest(server, str(video), "--name", "cli video", "--frame-step", "2",
                  "--start-frame", "1")
    assert done.returncode == 0, done.stderr
    task_id = int(done.stdout.split()[1].rstrip(":"))
    task = get(server, f"/api/tasks/{task_id}")
    assert task["size"] == 10  # frames 1, 3, ..., 19
    assert task["mode"] == "interpolation"
    assert task["data_compressed_chunk_type"] == "video"


def test_ingest_archive(server, tmp_path) -> None:
    files = make_images(tmp_path / "src", 4, size=(16, 16))
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in files:
            zf.write(p, f"set/{p.name}")
    done = ingest(server, str(archive), "--name", "cli archive")
    assert done.returncode == 0, done.stderr
    task_id = int(done.stdout.split()[1].rstrip(":"))
    assert get(server, f"/api/tasks/{task_id}")["size"] == 4


def test_failed_ingest_leaves_no_task(server, tmp_path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not media")
    before = get(server, "/api/tasks?page_size=all")["count"]
    done = ingest(server, str(bad), "--name", "bad")
    assert done.returncode == 1
    assert "notes.txt" in done.stderr
    assert get(server, "/api/tasks?page_size=all")["count"] == before


def test_bad_arguments(server, tmp_path) -> None:
    files = make_images(tmp_path, 1, size=(16, 16))
    done = ingest(server, str(files[0]), "--name", "x", "--image-quality", "0")
    assert done.returncode == 2
    assert "image_quality" in done.stderr
    done = ingest(server, str(tmp_path / "missing.png"), "--name", "x")
    assert done.returncode == 2
    assert "does not exist" in done.stderr


# -- thin wrappers over the shared generators in tests/mediagen.py ------------------------


def make_images(
    folder: Path, count: int, *, size: tuple[int, int], names: list[str] | None = None
) -> list[Path]:
    """``count`` numbered pattern images in ``folder`` (``img_000.png``... by default)."""
    names = names or [f"img_{i:03d}.png" for i in range(count)]
    return [write_image(folder / name, i, size) for i, name in enumerate(names[:count])]


def make_video(path: Path, *, frames: int, size: tuple[int, int]) -> Path:
    return write_video(path, codec="libx264", frames=frames, size=size)
