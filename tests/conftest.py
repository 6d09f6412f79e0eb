"""Shared fixtures: a real framesvc server on a local port, and real cvat-sdk clients.

API tests never mock framesvc's own components: the ``server`` fixture starts
``framesvc serve`` as a subprocess exactly as an operator would (the stable CLI flags
and ``FRAMESVC_*`` variables), and tests talk to it over HTTP with ``cvat-sdk`` or
``aiohttp``/``urllib``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin-Secret-123"


@dataclass
class LiveServer:
    host: str
    port: int
    data_dir: Path
    cache_dir: Path
    share_root: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    admin_user: str = ADMIN_USER
    admin_password: str = ADMIN_PASSWORD

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, lines: int = 80) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    root: Path, extra_env: dict[str, str] | None = None, *, admin: bool = True
) -> LiveServer:
    """Start ``framesvc serve`` under ``root`` and wait until it accepts connections.

    ``admin=False`` leaves the FRAMESVC_ADMIN_* variables unset (the first-start path).
    """
    port = free_port()
    data_dir, cache_dir, share_root = root / "data", root / "cache", root / "share"
    for d in (data_dir, cache_dir, share_root):
        d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "FRAMESVC_ADMIN_USER": ADMIN_USER,
            "FRAMESVC_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "FRAMESVC_SHARE_ROOT": str(share_root),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if not admin:
        del env["FRAMESVC_ADMIN_USER"], env["FRAMESVC_ADMIN_PASSWORD"]
    env.update(extra_env or {})
    log_path = root / "server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "framesvc.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--data-dir", str(data_dir), "--cache-dir", str(cache_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    server = LiveServer("127.0.0.1", port, data_dir, cache_dir, share_root, log_path, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"framesvc exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"framesvc did not start within 60 s:\n{server.log_tail()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One framesvc for the whole session; tests create their own tasks and users."""
    live = start_server(tmp_path_factory.mktemp("framesvc"))
    yield live
    stop_server(live)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide folder for generated media (see tests/mediagen.py)."""
    return tmp_path_factory.mktemp("media")


@pytest.fixture
def sdk_client(server: LiveServer):  # type: ignore[no-untyped-def]
    """A cvat-sdk client logged in as the admin with a password (session login)."""
    from cvat_sdk import make_client

    with make_client(f"http://{server.host}", port=server.port,
                     credentials=(server.admin_user, server.admin_password)) as client:
        yield client
