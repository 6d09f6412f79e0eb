"""SIGKILL during a stream of annotation writes: every acknowledged write is there after
a restart, and the one in flight is either wholly there or wholly absent.

One client writes task annotations in a loop (PATCH create/update/delete and PUT, each
spanning both jobs of the task) and records, for every answered write, the state both
jobs must then be in and the task's version.  The server is killed mid-stream.  After a
restart the state must be the last acknowledged one, or the one the write in flight at
the kill would have made; never a mix (one job updated, the other not, or half of a
write's objects).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import urllib3
from crashutil import (  # noqa: F401 (servers is a fixture)
    Servers,
    admin,
    api,
    check_stores_after_kill,
    check_wal_not_stuck,
    multipart_batch,
    new_task,
    pattern_png,
    servers_fixture,
    upload_finish,
    upload_start,
    wait_request,
    wait_until,
)

#: Frames of the two jobs (segment size 4): one object of each write goes to each job.
FRAMES = (1, 5)
#: Rectangles per frame per write: big enough writes that the kill often lands in one.
PER_FRAME = 40
#: Acknowledged writes before the kill.
ACKED_BEFORE_KILL = 25

Points = tuple[float, ...]
#: The state of the task: per frame, object id -> points.
State = dict[int, dict[int, Points]]


def snapshot(state: State) -> dict[int, list[Points]]:
    """What can be compared across a restart: per frame, the sorted points."""
    return {frame: sorted(objs.values()) for frame, objs in state.items()}


@dataclass
class Writer:
    """Writes task annotations until the server goes away; keeps what was acknowledged."""

    server: Any
    task_id: int
    label_id: int
    state: State = field(default_factory=lambda: {f: {} for f in FRAMES})
    #: (snapshot, task version) after each acknowledged write, in order.
    acked: list[tuple[dict[int, list[Points]], int]] = field(default_factory=list)
    #: The snapshot the write in flight at the kill would have produced.
    in_flight: dict[int, list[Points]] | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.http = urllib3.PoolManager(retries=False, timeout=30)
        self.stopped = threading.Event()

    def rect(self, frame: int, points: Points, obj_id: int | None = None) -> dict[str, Any]:
        shape = {"type": "rectangle", "label_id": self.label_id, "frame": frame,
                 "points": list(points)}
        if obj_id is not None:
            shape["id"] = obj_id
        return shape

    def plan(self, i: int) -> tuple[str, str, list[dict[str, Any]], State]:
        """The i-th write: (method, query, shapes, state if it succeeds (ids may be 0))."""
        after = {f: dict(objs) for f, objs in self.state.items()}
        marked = [m for m in range(i) if any(p[0] == m for p in self.state[FRAMES[0]].values())]
        if i % 11 == 10:  # replace everything with what is there (new ids)
            shapes = [self.rect(f, p) for f, objs in self.state.items() for p in objs.values()]
            return "PUT", "", shapes, after
        if i % 5 == 4 and marked:  # move every object of an earlier write
            target = marked[-1]
            shapes = []
            for f, objs in self.state.items():
                for obj_id, p in objs.items():
                    if p[0] == target:
                        moved = (p[0], p[1] + 1000.0, p[2], p[3] + 1000.0)
                        shapes.append(self.rect(f, moved, obj_id))
                        after[f][obj_id] = moved
            return "PATCH", "?action=update", shapes, after
        if i % 7 == 6 and marked:  # delete every object of an earlier write
            target = marked[0]
            shapes = []
            for f, objs in self.state.items():
                for obj_id, p in objs.items():
                    if p[0] == target:
                        shapes.append(self.rect(f, p, obj_id))
                        del after[f][obj_id]
            return "PATCH", "?action=delete", shapes, after
        shapes = [self.rect(f, (float(i), float(s), i + 1.0, s + 1.0))
                  for f in FRAMES for s in range(PER_FRAME)]
        for n, shape in enumerate(shapes):  # provisional ids, replaced from the answer
            after[shape["frame"]][-1 - n] = tuple(shape["points"])
        return "PATCH", "?action=create", shapes, after

    def run(self) -> None:
        try:
            i = 0
            while not self.stopped.is_set():
                method, query, shapes, after = self.plan(i)
                self.in_flight = snapshot(after)
                try:
                    reply = self.http.request(
                        method, f"{self.server.url}/api/tasks/{self.task_id}/annotations{query}",
                        json={"tags": [], "shapes": shapes, "tracks": []},
                        headers=admin(self.server))
                except urllib3.exceptions.HTTPError:
                    return  # the server died with this write in flight
                assert reply.status == 200, reply.data
                body = reply.json()
                if method == "PUT" or query == "?action=create":
                    if method == "PUT":
                        after = {f: {} for f in FRAMES}
                    else:
                        after = {f: {k: v for k, v in objs.items() if k > 0}
                                 for f, objs in after.items()}
                    for shape in body["shapes"]:
                        after[shape["frame"]][shape["id"]] = tuple(shape["points"])
                self.state = after
                self.acked.append((snapshot(after), int(body["version"])))
                self.in_flight = None
                i += 1
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def task_snapshot(server: Any, task_id: int) -> tuple[dict[int, list[Points]], int]:
    data = api(server, "GET", f"/api/tasks/{task_id}/annotations").json
    assert {shape["frame"] for shape in data["shapes"]} <= set(FRAMES)
    assert data["tags"] == [] and data["tracks"] == []
    now = {f: sorted(tuple(shape["points"]) for shape in data["shapes"] if shape["frame"] == f)
           for f in FRAMES}
    return now, int(data["version"])


def test_kill_mid_annotation_writes(servers: Servers) -> None:
    server = servers.start()
    task_id = new_task(server, "crash-annotations", segment_size=4)
    upload_start(server, task_id)
    files = [(f"img_{i}.png", pattern_png(i)) for i in range(8)]
    assert multipart_batch(server, task_id, files).status == 200
    assert wait_request(server, upload_finish(server, task_id))["status"] == "finished"
    label_id = api(server, "GET", f"/api/labels?task_id={task_id}").json["results"][0]["id"]

    writer = Writer(server, task_id, label_id)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    wait_until(lambda: len(writer.acked) >= ACKED_BEFORE_KILL or writer.error, 60,
               f"{ACKED_BEFORE_KILL} acknowledged writes")
    # Anywhere in the next write: parsing, validating, in its transaction, answering.
    time.sleep(random.uniform(0, 0.1))
    killed = servers.kill()
    writer.stopped.set()
    thread.join(30)
    assert not thread.is_alive()
    assert writer.error is None, writer.error
    last, last_version = writer.acked[-1]
    in_flight = writer.in_flight

    check_stores_after_kill(killed)
    server = servers.start()
    now, version = task_snapshot(server, task_id)
    if now == last:
        assert version == last_version
    else:
        # The write in flight was committed (its answer was lost with the process).
        assert in_flight is not None and now == in_flight
        assert version > last_version
    assert now[FRAMES[0]] and now[FRAMES[1]]

    # Writing goes on from there.
    reply = api(server, "PATCH", f"/api/tasks/{task_id}/annotations?action=create",
                body={"tags": [], "tracks": [], "shapes": [
                    {"type": "rectangle", "label_id": label_id, "frame": FRAMES[0],
                     "points": [-1, -1, 0, 0]}]})
    assert reply.status == 200, reply.raw
    after, after_version = task_snapshot(server, task_id)
    assert after[FRAMES[0]] == sorted([*now[FRAMES[0]], (-1.0, -1.0, 0.0, 0.0)])
    assert after_version > version
    check_wal_not_stuck(server)
    servers.check_log()
