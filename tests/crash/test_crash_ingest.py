"""SIGKILL during an ingest: the request ends ``failed``, nothing of it remains, and the
task takes data again.

The ingest is a background request (``create:task-N``) that moves the upload session's
files into ``<data>/tasks/N/raw``, extracts an archive there, probes the images and
writes every row in one transaction at the end.  Killed anywhere before that commit,
the next start marks the request failed ("interrupted by a server restart") and
removes the files; killed after it, the task keeps its data and the request is
recorded as finished.
"""

from __future__ import annotations

import functools
import io
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from crashutil import (  # noqa: F401 (servers is a fixture)
    Servers,
    api,
    check_stores_after_kill,
    check_wal_not_stuck,
    db,
    multipart_batch,
    new_task,
    pattern_png,
    request_status,
    servers_fixture,
    upload_finish,
    upload_start,
    wait_request,
    wait_until,
)
from mediagen import read_frame_number
from PIL import Image

from framesvc.background import RESTART_MESSAGE

#: Images in the archive: enough that extracting and probing take a while.
ARCHIVE_IMAGES = 5000


@functools.cache
def archive(count: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for i in range(count):
            zf.writestr(f"img_{i:05d}.png", pattern_png(i % 4096))
    return out.getvalue()


def task_dirs(root: Path, task_id: int) -> tuple[Path, Path]:
    return root / "data" / "tasks" / str(task_id), root / "data" / "uploads" / str(task_id)


def task_rows(server: Any, task_id: int) -> dict[str, int]:
    return {
        "data_id": db(server, "SELECT count(*) FROM tasks WHERE id = ? AND data_id IS NOT NULL",
                      (task_id,))[0][0],
        "segments": db(server, "SELECT count(*) FROM segments WHERE task_id = ?",
                       (task_id,))[0][0],
        "jobs": db(server, "SELECT count(*) FROM jobs WHERE task_id = ?", (task_id,))[0][0],
        "upload_files": db(server, "SELECT count(*) FROM upload_files WHERE task_id = ?",
                           (task_id,))[0][0],
        "data": db(server, "SELECT count(*) FROM data")[0][0],
        "images": db(server, "SELECT count(*) FROM images")[0][0],
    }


def give_data_and_check(server: Any, task_id: int, count: int = 5) -> None:
    """Attach ``count`` fresh images and check every frame the task then serves."""
    upload_start(server, task_id)
    files = [(f"again_{i:02d}.png", pattern_png(100 + i)) for i in range(count)]
    assert multipart_batch(server, task_id, files).status == 200
    status = wait_request(server, upload_finish(server, task_id, chunk_size=2))
    assert status["status"] == "finished", status
    task = api(server, "GET", f"/api/tasks/{task_id}").json
    assert task["size"] == count
    for frame in range(count):
        reply = api(server, "GET", f"/api/tasks/{task_id}/data?type=frame&number={frame}"
                                   "&quality=original")
        assert reply.status == 200, reply.raw
        picture = np.asarray(Image.open(io.BytesIO(reply.raw)).convert("RGB"))
        assert read_frame_number(picture) == 100 + frame


#: A start whose recovery dies in the cleanup of the interrupted request (as a second
#: crash right after the first would): run by framesvc's own runner, on the real store.
DIE_IN_RECOVERY = """
import asyncio, os, sys
from framesvc.background import BackgroundRunner
from framesvc.store.db import create_engine

async def main():
    async def die(row):
        os._exit(9)
    await BackgroundRunner(create_engine(sys.argv[1])).recover(die)

asyncio.run(main())
"""


def die_in_recovery(server: Any) -> None:
    url = server.database_url
    done = subprocess.run([sys.executable, "-c", DIE_IN_RECOVERY, url], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 9, done.stderr


#: How far the ingest must have come before the kill, as the request's message says.
PHASES = {
    "extracting": lambda st: st["message"].startswith("Media files are being extracted"),
    "probing": lambda st: st["message"] in ("Media files are being discovered",
                                            "Images are being probed"),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_kill_mid_ingest_fails_the_request_and_leaves_nothing(
    servers: Servers, phase: str
) -> None:
    server = servers.start()
    task_id = new_task(server, f"crash-ingest-{phase}", segment_size=50)
    before = task_rows(server, task_id)
    upload_start(server, task_id)
    assert multipart_batch(server, task_id, [("images.zip", archive(ARCHIVE_IMAGES))]).status \
        == 200
    rq_id = upload_finish(server, task_id)
    media_dir, session_dir = task_dirs(servers.root, task_id)

    def reached() -> dict[str, Any] | None:
        status = request_status(server, rq_id)
        assert status["status"] in ("queued", "started"), f"the ingest ended: {status}"
        return status if PHASES[phase](status) else None

    seen = wait_until(reached, 30, f"the ingest to be {phase}")
    raw = media_dir / "raw"
    wait_until(lambda: raw.is_dir() and any(raw.iterdir()), 10, "extracted files")
    killed = servers.kill()
    assert seen["status"] == "started"
    assert any(raw.iterdir()), "the kill came before the ingest wrote anything"

    check_stores_after_kill(killed)
    # A recovery that dies before the cleanup is done must leave the request to the next.
    die_in_recovery(killed)
    assert db(killed, "SELECT status FROM requests WHERE id = ?", (rq_id,)) == [("started",)]
    server = servers.start()

    status = request_status(server, rq_id)
    assert status["status"] == "failed"
    assert status["message"] == RESTART_MESSAGE
    assert status["finished_date"] is not None
    assert task_rows(server, task_id) == before
    assert not media_dir.exists()
    assert not session_dir.exists()
    task = api(server, "GET", f"/api/tasks/{task_id}").json
    assert task["size"] == 0 and task["jobs"]["count"] == 0

    give_data_and_check(server, task_id)
    check_wal_not_stuck(server)
    servers.check_log()


def test_kill_between_the_commit_and_the_status_keeps_the_data_and_finishes(
    servers: Servers,
) -> None:
    """The one window after the ingest's commit: rows written, request still ``started``.

    Too short to hit with a timed kill, so the test puts the request row back into the
    state such a kill leaves (the ingest transaction committed, the status update not),
    then kills.  The task has its data, so the restart must not call that a failure.
    """
    server = servers.start()
    task_id = new_task(server, "crash-after-commit")
    upload_start(server, task_id)
    files = [(f"img_{i:02d}.png", pattern_png(i)) for i in range(3)]
    assert multipart_batch(server, task_id, files).status == 200
    rq_id = upload_finish(server, task_id)
    assert wait_request(server, rq_id)["status"] == "finished"
    rows = task_rows(server, task_id)
    db(server, "UPDATE requests SET status = 'started', progress = 0.9, finished_date = NULL,"
               " result_id = NULL, message = 'Task is being saved in database' WHERE id = ?",
       (rq_id,))
    killed = servers.kill()
    check_stores_after_kill(killed)
    server = servers.start()

    status = request_status(server, rq_id)
    assert status["status"] == "finished", status
    assert status["result_id"] == task_id
    assert status["progress"] == 1.0 and status["message"] == ""
    assert status["finished_date"] is not None
    assert task_rows(server, task_id) == rows
    meta = api(server, "GET", f"/api/tasks/{task_id}/data/meta").json
    assert [f["name"] for f in meta["frames"]] == [name for name, _ in files]
    check_wal_not_stuck(server)
    servers.check_log()
