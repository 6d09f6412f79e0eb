"""Numbers no integer parser should choke on: never a 5xx, always a clear 4xx."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from conftest import LiveServer


def _call(server: LiveServer, method: str, path: str, body: object | None = None) -> int:
    import base64

    token = base64.b64encode(f"{server.admin_user}:{server.admin_password}".encode()).decode()
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize(
    "path",
    [
        "/api/tasks/" + "9" * 5000,
        "/api/jobs/" + "1" * 25,
        "/api/tasks/%D9%A1%D9%A2",  # Arabic-Indic digits are not ids
        "/api/jobs/99999999999999999999/data/meta",
    ],
)
def test_oversized_or_foreign_ids_are_not_found(server: LiveServer, path: str) -> None:
    assert _call(server, "GET", path) == 404


@pytest.mark.parametrize("value", ["1" * 5000, "\u00b2", "\u0661", "12a", ""])
def test_integer_fields_reject_text_that_is_not_a_small_integer(
    server: LiveServer, value: str
) -> None:
    status = _call(server, "POST", "/api/tasks", {"name": "n", "segment_size": value})
    assert status == 400
