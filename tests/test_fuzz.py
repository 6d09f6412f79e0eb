"""Schema-driven fuzzing: schemathesis generates requests for every operation of the live
server's own ``GET /api/schema/`` and checks every answer.

A framesvc of its own (the shared ``server`` fixture is left alone: fuzzing creates,
changes and deletes things) holds an image task, a video task, a ground-truth job,
labels with attributes and annotations, so the media and annotation endpoints have
something real to serve.  Integer ``id`` path parameters are drawn from those objects'
ids most of the time, and anywhere in the schema's range otherwise.

Each operation is one test: positive cases (valid by the schema) and negative cases
(schema-violating) from Hypothesis, then these checks on every answer:

* ``not_a_server_error`` - no 5xx, ever;
* ``status_code_conformance``, ``content_type_conformance``,
  ``response_headers_conformance`` and ``response_schema_conformance`` - the answer is
  documented: its status, its media type, its headers and its body.

Operations that delete run last so that the others see the seeded objects.  The budget
is ``FRAMESVC_FUZZ_EXAMPLES`` cases per operation and generation mode (default 8, about
a minute here); ``make fuzz`` runs the same tests with a larger budget and a random seed
(``FRAMESVC_FUZZ_SEED``; by default the suite is derandomized, so a failure reproduces).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from conftest import LiveServer, start_server, stop_server
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from mediaapi import images, video
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from framesvc.app import make_app
from framesvc.config import Settings
from framesvc.http.schema import build_schema

EXAMPLES = int(os.environ.get("FRAMESVC_FUZZ_EXAMPLES", "8"))
#: Unset: derandomized (a failure reproduces); "random": a fresh run each time; a number:
#: that seed.
SEED = os.environ.get("FRAMESVC_FUZZ_SEED", "")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
pytestmark = pytest.mark.slow

# TUS chunks are raw bytes, like any octet stream.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


def _negatable(op: dict[str, Any]) -> bool:
    """Whether schemathesis can make a schema-violating request for ``op``: it needs a
    body or a parameter with some constraint (a plain optional string takes anything)."""
    if "requestBody" in op:
        return True
    return any((p.get("required") and p["in"] != "path") or p["schema"] != {"type": "string"}
               for p in op.get("parameters", []))


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """(method, path, mode) of every documented operation, deleting ones last.

    Taken from the schema the application builds for itself, at collection time, so the
    parametrization cannot miss an operation that the server would serve.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        document = build_schema(make_app(Settings(data_dir=root / "d", cache_dir=root / "c")))
    found = []
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            found.append((method.upper(), path, GenerationMode.POSITIVE))
            if _negatable(op):
                found.append((method.upper(), path, GenerationMode.NEGATIVE))
    return sorted(found, key=lambda c: (c[0] == "DELETE", c[1] == "/api/auth/logout", c[:2],
                                        c[2] == GenerationMode.NEGATIVE))


CASES = _cases()


@dataclass
class FuzzTarget:
    server: LiveServer
    schema: Any
    session: requests.Session
    ids: dict[str, list[int]]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    root = tmp_path_factory.mktemp("fuzz")
    # Fuzzed logins fail a lot; the throttle must not lock the admin's own requests out.
    server = start_server(root / "server", {"FRAMESVC_LOGIN_FAILURES_PER_IP": "1000000",
                                            "FRAMESVC_LOGIN_FAILURES_PER_USER": "1000000"})
    try:
        session = requests.Session()
        session.auth = (server.admin_user, server.admin_password)
        ids = _seed(server, session, root)
        schema = schemathesis.openapi.from_url(server.url + "/api/schema/")
        yield FuzzTarget(server, schema, session, ids)
    finally:
        stop_server(server)


def _seed(server: LiveServer, session: requests.Session, root: Path) -> dict[str, list[int]]:
    """An image task and a video task with data, labels, a GT job and annotations."""
    from cvat_sdk import make_client

    media = root / "media"
    media.mkdir()
    labels = [
        {"name": "car", "attributes": [
            {"name": "color", "mutable": False, "input_type": "select",
             "default_value": "red", "values": ["red", "blue"]}]},
        {"name": "person"},
    ]
    with make_client(f"http://{server.host}", port=server.port,
                     credentials=(server.admin_user, server.admin_password)) as client:
        client.config.status_check_period = 0.05
        image_task = client.tasks.create_from_data(
            spec={"name": "fuzz images", "labels": labels, "segment_size": 4},
            resources=images(media, 8), data_params={"image_quality": 70})
        video_task = client.tasks.create_from_data(
            spec={"name": "fuzz video", "labels": labels[:1]},
            resources=[video(media / "clip.mp4", 12)],
            data_params={"image_quality": 70, "chunk_size": 4})
    url = server.url
    gt = session.post(url + "/api/jobs", json={
        "type": "ground_truth", "task_id": image_task.id,
        "frame_selection_method": "manual", "frames": [1, 5]})
    assert gt.status_code == 201, gt.text
    task_labels = session.get(url + f"/api/labels?task_id={image_task.id}").json()["results"]
    jobs = session.get(url + "/api/jobs?page_size=all").json()["results"]
    label = task_labels[0]
    put = session.put(url + f"/api/tasks/{image_task.id}/annotations", json={
        "shapes": [{"type": "rectangle", "label_id": label["id"], "frame": 0,
                    "points": [1, 2, 30, 20],
                    "attributes": [{"spec_id": label["attributes"][0]["id"],
                                    "value": "blue"}]}],
        "tags": [{"label_id": task_labels[1]["id"], "frame": 2}],
        "tracks": [{"label_id": label["id"], "frame": 0, "shapes": [
            {"type": "polygon", "frame": 0, "points": [1, 1, 9, 1, 5, 8]},
            {"type": "polygon", "frame": 6, "points": [2, 2, 9, 2, 5, 9]}]}],
    })
    assert put.status_code == 200, put.text
    return {
        "tasks": [image_task.id, video_task.id],
        "jobs": [j["id"] for j in jobs],
        "labels": [lb["id"] for lb in task_labels],
        "users": [1],
    }


def _id_pool(path: str, ids: dict[str, list[int]]) -> list[int]:
    for prefix, key in (("/api/tasks/", "tasks"), ("/api/jobs/", "jobs"),
                        ("/api/labels/", "labels"), ("/api/users/", "users")):
        if path.startswith(prefix):
            return ids[key]
    return []


def _settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not SEED,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        report_multiple_bugs=False,
    )


@pytest.mark.parametrize(("method", "path", "mode"), CASES,
                         ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES])
def test_no_server_errors_and_answers_as_documented(
    target: FuzzTarget, method: str, path: str, mode: GenerationMode
) -> None:
    operation = target.schema[path][method]
    pool = _id_pool(path, target.ids)

    @_settings()
    @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans(),
           known=st.sampled_from(pool) if pool else st.none())
    def run(case: Any, real: bool, known: int | None) -> None:
        params = case.path_parameters or {}
        generated = params.get("id")
        # Only a valid generated id is replaced: a negative case's bad id stays bad.
        if known is not None and real and isinstance(generated, int) and generated >= 0:
            params["id"] = known
        response = case.call(base_url=target.server.url, session=target.session,
                             timeout=60)
        case.validate_response(response, checks=CHECKS)

    if SEED.isdigit():
        run = seed(int(SEED))(run)
    run()
