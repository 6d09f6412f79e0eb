"""SIGKILL while many cold chunks are being built: no partial entry is ever served.

Builds write into ``<cache>/staging`` and are fsynced and renamed into the store only
when complete, so a kill leaves partial files in staging (orphans) and complete
entries in the store, nothing in between.  After the kill, reopening the cache
(``framesvc cache stats``, the next ``framesvc serve``) removes the orphans; every
chunk answered before the kill is answered with the same bytes after it, and every
chunk, cached or built anew, decodes to exactly the frames it should hold.
"""

from __future__ import annotations

import io
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import urllib3
from crashutil import (  # noqa: F401 (servers is a fixture)
    Servers,
    admin,
    api,
    check_stores_after_kill,
    check_wal_not_stuck,
    framesvc_cli,
    multipart_batch,
    new_task,
    pattern_png,
    servers_fixture,
    upload_finish,
    upload_start,
    wait_request,
    wait_until,
)
from mediagen import read_frame_number, write_video
from PIL import Image

from framesvc.cache import ItemMeta, MediaCache
from framesvc.workers import WorkerPool

SIZE = (160, 120)


def make_task(servers: Servers, name: str, files: list[tuple[str, bytes]],
              chunk_size: int) -> int:
    server = servers.current
    task_id = new_task(server, name)
    upload_start(server, task_id)
    assert multipart_batch(server, task_id, files).status == 200
    status = wait_request(server, upload_finish(server, task_id, chunk_size=chunk_size,
                                                image_quality=70))
    assert status["status"] == "finished", status
    return task_id


def decode_chunk(data: bytes) -> list[int]:
    """Frame numbers drawn in a chunk (an MP4, or a zip of images)."""
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = sorted(zf.namelist())
            return [read_frame_number(np.asarray(Image.open(io.BytesIO(zf.read(n)))
                                                 .convert("RGB"))) for n in names]
    with av.open(io.BytesIO(data)) as container:
        return [read_frame_number(f.to_ndarray(format="rgb24"))
                for f in container.decode(video=0)]


def test_kill_mid_chunk_builds(servers: Servers, tmp_path: Path) -> None:
    server = servers.start()
    frames = 96
    clip = write_video(tmp_path / "clip.mp4", codec="libx264", frames=frames, size=SIZE,
                       options={"preset": "veryfast",
                                "x264-params": "keyint=8:min-keyint=8:scenecut=0:bframes=0"})
    tasks: dict[int, tuple[int, int]] = {}  # task -> (frames, chunk size)
    for n in range(2):
        task_id = make_task(servers, f"video-{n}", [("clip.mp4", clip.read_bytes())], 8)
        tasks[task_id] = (frames, 8)
    images = [(f"img_{i:03d}.png", pattern_png(i, SIZE)) for i in range(40)]
    tasks[make_task(servers, "images", images, 4)] = (40, 4)

    urls = [f"/api/tasks/{t}/data?type=chunk&number={c}&quality={q}"
            for t, (size, cs) in tasks.items() for c in range(-(-size // cs))
            for q in ("compressed", "original")]
    expected = {f"/api/tasks/{t}/data?type=chunk&number={c}&quality={q}":
                list(range(c * cs, min((c + 1) * cs, size)))
                for t, (size, cs) in tasks.items() for c in range(-(-size // cs))
                for q in ("compressed", "original")}
    staging = server.cache_dir / "staging"
    assert not any(staging.iterdir())

    # Every chunk requested at once; the server dies while builds are running.
    http = urllib3.PoolManager(maxsize=len(urls), retries=False, timeout=60)
    answered: dict[str, bytes] = {}
    lock = threading.Lock()

    def fetch(url: str) -> None:
        try:
            reply = http.request("GET", server.url + url, headers=admin(server))
        except urllib3.exceptions.HTTPError:
            return  # the server died under this request
        if reply.status == 200:
            with lock:
                answered[url] = reply.data

    with ThreadPoolExecutor(len(urls)) as executor:
        for url in urls:
            executor.submit(fetch, url)
        wait_until(lambda: len(answered) >= 8 and any(staging.iterdir()), 60,
                   "some chunks answered and more being built")
        killed = servers.kill()
        orphans = sorted(p.name for p in staging.iterdir())
    assert orphans, "no build was running at the kill"
    assert 8 <= len(answered) < len(urls)

    stats = check_stores_after_kill(killed)
    assert stats["orphans_removed"] == len(orphans)
    assert stats["staging_files"] == 0 and not any(staging.iterdir())
    server = servers.start()

    # Everything answered before the kill comes back byte for byte (a cache hit).
    for url, data in answered.items():
        reply = api(server, "GET", url)
        assert reply.status == 200 and reply.raw == data, url
    # Every chunk, cached or not, holds exactly its frames.
    served = {}
    for url in urls:
        reply = api(server, "GET", url)
        assert reply.status == 200, (url, reply.raw)
        assert decode_chunk(reply.raw) == expected[url], url
        served[url] = reply.raw
    assert not any(staging.iterdir())

    # A cache emptied and rebuilt from scratch gives the same frames (zip members carry
    # their build time, so the bytes may differ); a sample of each kind keeps this short.
    cleared = framesvc_cli(server, "cache", "clear", "--cache-dir", str(server.cache_dir))
    assert cleared.returncode == 0, cleared.stderr
    for url in urls[::5]:
        reply = api(server, "GET", url)
        assert reply.status == 200
        assert decode_chunk(reply.raw) == decode_chunk(served[url]), url
    check_wal_not_stuck(server)
    servers.check_log()


async def test_a_damaged_entry_is_dropped_not_served(tmp_path: Path) -> None:
    """Beyond a crash (a disk or a person truncating an item file): the size recorded at
    publication no longer matches, so the entry is a miss and is built again."""
    data = bytes(range(256)) * 400
    pool = WorkerPool(1)
    cache = MediaCache(tmp_path / "cache", 64 * 1024 * 1024, transient_dir=tmp_path)
    try:
        def build(out: BinaryIO) -> ItemMeta:
            out.write(data)
            return ItemMeta("application/octet-stream")

        with await cache.get_or_build("chunk", build, pool) as item:
            path = item.path
        with open(path, "r+b") as damaged:
            damaged.truncate(len(data) // 2)
        assert await cache.get("chunk") is None
        assert not cache.contains("chunk")
        with await cache.get_or_build("chunk", build, pool) as item:
            assert item.file.read() == data
    finally:
        await cache.aclose()
        pool.shutdown()
