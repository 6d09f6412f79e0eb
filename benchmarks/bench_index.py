"""Video indexing speed against a full decode of the same file, in the same run.

Run with ``make bench`` (or ``pytest benchmarks/bench_index.py --benchmark-only -o
testpaths=benchmarks``).  A 10-minute 720p H.264 file (25 fps, 15000 frames, x264
``ultrafast`` with 2 B-frames and a GOP of 250, a moving gradient with the frame
number drawn in it) is generated once and cached in the system temp directory
(``framesvc-bench/``; a few minutes the first time).  Then:

* :func:`framesvc.media.probe.index_video` (demux only, one decoded frame);
* a full decode of every frame with PyAV, ``thread_type = "AUTO"``: what indexing by
  decoding (CVAT's manifest creation) costs at the very least.

Target (asserted, it is the point of the suite): index median ≤ 5 % of the full
decode median.  Medians and the ratio are stored in ``extra_info`` and printed.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from framesvc.media.limits import MediaLimits
from framesvc.media.probe import index_video

WIDTH, HEIGHT, FPS, SECONDS, GOP = 1280, 720, 25, 600, 250
FRAMES = FPS * SECONDS
TARGET_RATIO = 0.05
LIMITS = MediaLimits()
_MEDIANS: dict[str, float] = {}


def _moving_frames(count: int) -> Any:
    """yuv420p planes: a diagonal gradient sliding 8 px per frame, frame number in bits."""
    yy, xx = np.mgrid[0:HEIGHT, 0 : WIDTH * 2]
    base = ((xx + yy // 2) % 256).astype(np.uint8)
    for i in range(count):
        off = (i * 8) % WIDTH
        planes = np.empty((HEIGHT * 3 // 2, WIDTH), np.uint8)
        planes[:HEIGHT] = base[:, off : off + WIDTH]
        for bit in range(16):  # 16 cells of 32x32 in the top-left corner
            y, x = divmod(bit, 4)
            planes[y * 32 : y * 32 + 32, x * 32 : x * 32 + 32] = 235 if i >> bit & 1 else 16
        planes[HEIGHT:] = 128  # U and V: neutral
        yield planes


def generate(path: Path) -> Path:
    tmp = path.with_suffix(f".tmp{os.getpid()}.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream(
            "libx264",
            rate=FPS,
            options={
                "preset": "ultrafast",
                "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=2",
            },
        )
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        for i, planes in enumerate(_moving_frames(FRAMES)):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


@pytest.fixture(scope="module")
def long_video() -> Path:
    cache = Path(tempfile.gettempdir()) / "framesvc-bench"
    cache.mkdir(exist_ok=True)
    path = cache / f"moving_{WIDTH}x{HEIGHT}_{FPS}fps_{SECONDS}s_gop{GOP}.mp4"
    if not path.exists():
        started = time.perf_counter()
        generate(path)
        print(f"\ngenerated {path} in {time.perf_counter() - started:.1f} s")
    return path


def full_decode(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def _timed_median(fn: Any, *args: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_index_video(benchmark: Any, long_video: Path) -> None:
    info = benchmark.pedantic(index_video, args=(long_video, LIMITS), rounds=7, iterations=1,
                              warmup_rounds=1)
    assert info.frame_count == FRAMES
    assert info.index_method == "demux"
    assert info.index.keyframes.tolist() == list(range(0, FRAMES, GOP))
    _MEDIANS["index"] = benchmark.stats.stats.median
    benchmark.extra_info["frames"] = info.frame_count
    benchmark.extra_info["file_bytes"] = long_video.stat().st_size


def test_full_decode_and_ratio(benchmark: Any, long_video: Path) -> None:
    frames = benchmark.pedantic(full_decode, args=(long_video,), rounds=2, iterations=1)
    assert frames == FRAMES
    decode = benchmark.stats.stats.median
    index = _MEDIANS.get("index") or _timed_median(index_video, long_video, LIMITS, rounds=5)
    ratio = index / decode
    benchmark.extra_info.update(
        index_median_s=round(index, 4), decode_median_s=round(decode, 3), ratio=round(ratio, 5)
    )
    print(
        f"\nindex_video median {index * 1000:.1f} ms, full decode median {decode:.2f} s "
        f"({FRAMES / decode:.0f} fps): index = {ratio:.2%} of decode (target ≤ {TARGET_RATIO:.0%})"
    )
    assert ratio <= TARGET_RATIO
