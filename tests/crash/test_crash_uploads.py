"""SIGKILL while uploads stream in: every acknowledged byte survives, in-flight ones may not.

A multipart batch answered 200 and TUS PATCHes answered 204 (with their
``Upload-Offset``) are acknowledged; a batch and a PATCH whose bodies are still arriving
when the server dies are not.  After a restart the TUS upload resumes from what HEAD
reports (at least the acknowledged offset), the unacknowledged batch can simply be sent
again, and the task is created from exactly the files the client sent.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from crashutil import (  # noqa: F401 (servers is a fixture)
    PartialRequest,
    Servers,
    api,
    check_stores_after_kill,
    check_wal_not_stuck,
    multipart_batch,
    multipart_body,
    new_task,
    pattern_png,
    servers_fixture,
    tus_create,
    tus_offset,
    tus_patch,
    upload_finish,
    upload_start,
    wait_request,
    wait_until,
)
from mediagen import read_frame_number
from PIL import Image

KiB = 1024
MiB = 1024 * KiB


def noise_png(side: int) -> bytes:
    """A PNG that does not compress (about 3 bytes a pixel): big with few pixels."""
    rng = np.random.default_rng(side)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)).save(out, "PNG",
                                                                        compress_level=1)
    return out.getvalue()


def session_files(root: Path, task_id: int) -> dict[str, int]:
    folder = root / "data" / "uploads" / str(task_id)
    return {p.name: p.stat().st_size for p in folder.iterdir()} if folder.is_dir() else {}


def test_kill_mid_upload_keeps_acknowledged_bytes(servers: Servers) -> None:
    server = servers.start()
    task_id = new_task(server, "crash-uploads")
    upload_start(server, task_id)

    batch1 = [(f"img_{i:03d}.png", pattern_png(i)) for i in range(4)]
    assert multipart_batch(server, task_id, batch1).status == 200

    big = noise_png(1100)
    assert len(big) > 3 * MiB
    location = tus_create(server, task_id, "/client/big.png", len(big))
    acked = 0
    for _ in range(3):
        reply = tus_patch(server, location, acked, big[acked : acked + 300 * KiB])
        assert reply.status == 204, reply.raw
        assert int(reply.headers["Upload-Offset"]) == acked + 300 * KiB
        acked += 300 * KiB

    # In flight at the kill: a batch whose first part has fully arrived (the server has
    # begun the second), and a 2 MiB PATCH of which 1.5 MiB were sent.
    before = session_files(servers.root, task_id)
    batch2 = [("img_004.png", pattern_png(4)), ("noise.png", noise_png(100)),
              ("img_005.png", pattern_png(5))]
    body, content_type = multipart_body(batch2, 4)
    in_flight_batch = PartialRequest(
        server, "POST", f"/api/tasks/{task_id}/data/", body,
        {"Upload-Multiple": "", "Content-Type": content_type})
    # aiohttp ends a part when it has read past the next boundary: send up to the second
    # part's data, then (once the server is reading it) some of that data.
    in_flight_batch.send(body.index(b'name="client_files[5]"') + 200)
    wait_until(lambda: len(set(session_files(servers.root, task_id)) - set(before)) == 1,
               20, "the first part of the batch to be read")
    in_flight_batch.send(16 * KiB)
    in_flight_patch = PartialRequest(
        server, "PATCH", location, big[acked : acked + 2 * MiB],
        {"Tus-Resumable": "1.0.0", "Upload-Offset": str(acked),
         "Content-Type": "application/offset+octet-stream"})
    in_flight_patch.send(3 * MiB // 2)
    tus_name = location.rsplit("/", 1)[1]

    def both_arrived() -> bool:
        now = session_files(servers.root, task_id)
        new = {name: size for name, size in now.items() if name not in before}
        return (len(new) == 2 and len(batch2[0][1]) in new.values()
                and now[tus_name] >= acked + MiB)

    wait_until(both_arrived, 20, "the in-flight bodies to reach the disk")
    killed = servers.kill()
    in_flight_batch.close()
    in_flight_patch.close()

    check_stores_after_kill(killed)
    server = servers.start()

    # TUS: at least the acknowledged offset; resume from there and finish.
    offset = tus_offset(server, location)
    assert acked <= offset <= len(big)
    while offset < len(big):
        reply = tus_patch(server, location, offset, big[offset : offset + MiB])
        assert reply.status == 204, reply.raw
        offset = int(reply.headers["Upload-Offset"])
    assert offset == len(big)

    # The unacknowledged batch is sent again, whole, as any client would retry it.
    retried = multipart_batch(server, task_id, batch2, 4)
    assert retried.status == 200, retried.raw

    rq_id = upload_finish(server, task_id)
    status = wait_request(server, rq_id)
    assert status["status"] == "finished", status

    sent = dict(batch1 + batch2)
    sent["big.png"] = big
    raw = servers.root / "data" / "tasks" / str(task_id) / "raw"
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == sent

    meta = api(server, "GET", f"/api/tasks/{task_id}/data/meta").json
    assert sorted(f["name"] for f in meta["frames"]) == sorted(sent)
    for frame, info in enumerate(meta["frames"]):
        if not info["name"].startswith("img_"):
            continue
        reply = api(server, "GET", f"/api/tasks/{task_id}/data?type=frame&number={frame}"
                                   "&quality=original")
        assert reply.status == 200, reply.raw
        picture = np.asarray(Image.open(io.BytesIO(reply.raw)).convert("RGB"))
        assert read_frame_number(picture) == int(info["name"][4:7])
    check_wal_not_stuck(server)
    servers.check_log()


def test_a_refused_batch_registers_none_of_its_files(server) -> None:  # type: ignore[no-untyped-def]
    """All of a batch or nothing, also when the server refuses it (not only when it dies)."""
    task_id = new_task(server, "batch-all-or-nothing")
    upload_start(server, task_id)
    assert multipart_batch(server, task_id, [("a.png", pattern_png(0))]).status == 200
    refused = multipart_batch(server, task_id, [("b.png", pattern_png(1)),
                                                ("a.png", pattern_png(2))], 1)
    assert refused.status == 409, refused.raw
    assert multipart_batch(server, task_id, [("b.png", pattern_png(1))], 1).status == 200
    rq_id = upload_finish(server, task_id)
    assert wait_request(server, rq_id)["status"] == "finished"
    meta = api(server, "GET", f"/api/tasks/{task_id}/data/meta").json
    assert [f["name"] for f in meta["frames"]] == ["a.png", "b.png"]
    session = server.data_dir / "uploads" / str(task_id)
    assert not session.exists() or not any(session.iterdir())
