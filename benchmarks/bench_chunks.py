"""Chunk and frame building speed, each measured against a reference in the same run.

Run with ``make bench`` (or ``pytest benchmarks/bench_chunks.py --benchmark-only -o
testpaths=benchmarks``).  A 1080p H.264 video with a fixed GOP of 30 is generated once
per run; then:

* a cold compressed zip chunk of 36 frames (frames 36..71: the chunk starts mid-GOP,
  as most chunks do) built by :func:`framesvc.media.chunks.build_video_chunk`, against
  (a) ``ffmpeg -ss T -i X -frames:v 36 -q:v 5 -f image2pipe -c:v mjpeg -`` (skipped with
  a message when ffmpeg is not installed: ``make bench-deps``) and (b) a CVAT-style
  builder written here (single-threaded decode counting frames from the keyframe,
  ``to_image()``, Pillow ``save(quality=…, optimize=True)`` into a zip);
* a random single frame (``type=frame``), original (1080p PNG) and compressed
  (540p PNG);
* the encoder choices of ``framesvc.media.encode``: JPEG via simplejpeg, OpenCV and
  Pillow; PNG via our ISA-L writer, OpenCV and Pillow.

Targets (asserted, they are the point of the suite): chunk ≤ 1.0× ffmpeg, ≥ 2.5×
faster than CVAT-style, random frame median ≤ 150 ms.  Medians and ratios are stored
in each benchmark's ``extra_info`` and printed.
"""

from __future__ import annotations

import io
import random
import shutil
import statistics
import subprocess
import time
import zipfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
import simplejpeg
from PIL import Image

from framesvc.media.chunks import build_video_chunk, build_video_frame
from framesvc.media.encode import encode_png
from framesvc.media.limits import MediaLimits
from framesvc.media.probe import VideoInfo, index_video

WIDTH, HEIGHT, FPS, GOP, FRAMES = 1920, 1080, 25, 30, 150
CHUNK = list(range(36, 72))
QUALITY = 70
ROUNDS = 7


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, VideoInfo]:
    """1080p H.264 (High profile, 2 B-frames), keyframe every 30 frames, moving content."""
    path = tmp_path_factory.mktemp("bench") / "gop30_1080p.mp4"
    rng = np.random.default_rng(1)
    grain = rng.integers(0, 4, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {
            "preset": "veryfast",
            "crf": "23",
            "bf": "2",
            "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0",
        }
        for i in range(FRAMES):
            img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            img[..., 0] = (xx // 2 + i * 6) % 256
            img[..., 1] = (yy // 2 + i * 3) % 256
            img[..., 2] = (((xx + i * 8) // 64 + yy // 64) % 2) * 120 + 60
            img += grain
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    info = index_video(path, MediaLimits())
    assert list(info.index.keyframes) == list(range(0, FRAMES, GOP))
    return path, info


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_against(
    benchmark: Any, ours: Callable[[], Any], reference: Callable[[], Any], rounds: int = ROUNDS
) -> tuple[float, float]:
    """Median seconds of ``ours`` (benchmarked) and ``reference``, run alternately.

    The reference runs in the (untimed) setup of each round, so both see the same
    machine load: on a shared machine that matters more than the number of rounds.
    """
    reference_times: list[float] = []

    def setup() -> None:
        reference_times.append(timed(reference))

    reference()  # warm-up: page cache, codec/library initialisation
    benchmark.pedantic(ours, setup=setup, rounds=rounds, iterations=1, warmup_rounds=1)
    return float(benchmark.stats.stats.median), statistics.median(reference_times[1:])


def run_ours(benchmark: Any, fn: Callable[[], Any], rounds: int = ROUNDS) -> float:
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    return float(benchmark.stats.stats.median)


def report(benchmark: Any, **values: float) -> None:
    benchmark.extra_info.update({k: round(v, 4) for k, v in values.items()})
    print(" ".join(f"{k}={v:.3f}" for k, v in values.items()))


# ------------------------------------------------------------------ 36-frame zip chunk
def ours_zip_chunk(video: tuple[Path, VideoInfo]) -> bytes:
    path, info = video
    out = io.BytesIO()
    build_video_chunk(
        path, info, CHUNK, kind="zip", quality="compressed", image_quality=QUALITY, out=out
    )
    return out.getvalue()


def cvat_style_zip_chunk(video: tuple[Path, VideoInfo]) -> bytes:
    """What CVAT's chunk worker does for a compressed zip chunk (spec §3.2, §7.6)."""
    path, info = video
    keyframe, pts = info.index.keyframe_at_or_before(CHUNK[0])
    out = io.BytesIO()
    with av.open(str(path)) as container, zipfile.ZipFile(out, "x") as archive:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        container.seek(pts, stream=stream)
        number = keyframe - 1
        position = 0
        for frame in container.decode(stream):
            if frame.pts is not None and frame.pts < pts:
                continue
            number += 1
            if number < CHUNK[0]:
                continue
            buf = io.BytesIO()
            frame.to_image().save(buf, format="JPEG", quality=QUALITY, optimize=True)
            archive.writestr(f"{position:06d}.jpeg", buf.getvalue())
            position += 1
            if number >= CHUNK[-1]:
                break
    return out.getvalue()


def ffmpeg_chunk(video: tuple[Path, VideoInfo], ffmpeg: str) -> bytes:
    path, _ = video
    start = f"{CHUNK[0] / FPS:.3f}"
    cmd = [ffmpeg, "-v", "error", "-ss", start, "-i", str(path), "-frames:v", str(len(CHUNK))]
    cmd += ["-q:v", "5", "-f", "image2pipe", "-c:v", "mjpeg", "-"]
    return subprocess.run(cmd, check=True, capture_output=True).stdout


def test_zip_chunk_vs_cvat_style(benchmark: Any, video: tuple[Path, VideoInfo]) -> None:
    with zipfile.ZipFile(io.BytesIO(ours_zip_chunk(video))) as archive:
        assert len(archive.infolist()) == len(CHUNK)
    with zipfile.ZipFile(io.BytesIO(cvat_style_zip_chunk(video))) as archive:
        assert len(archive.infolist()) == len(CHUNK)
    ours, reference = run_against(
        benchmark, lambda: ours_zip_chunk(video), lambda: cvat_style_zip_chunk(video)
    )
    report(benchmark, ours_s=ours, cvat_style_s=reference, speedup=reference / ours)
    assert reference / ours >= 2.5, f"only {reference / ours:.2f}x faster than CVAT-style"


def test_zip_chunk_vs_ffmpeg(benchmark: Any, video: tuple[Path, VideoInfo]) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed (make bench-deps): no reference to compare with")
    produced = ffmpeg_chunk(video, ffmpeg)
    assert produced.count(b"\xff\xd8\xff") >= len(CHUNK)
    ours, reference = run_against(
        benchmark, lambda: ours_zip_chunk(video), lambda: ffmpeg_chunk(video, ffmpeg)
    )
    report(benchmark, ours_s=ours, ffmpeg_s=reference, ratio=ours / reference)
    assert ours / reference <= 1.0, f"{ours / reference:.2f}x the time of ffmpeg"


# ------------------------------------------------------------------ random single frame
@pytest.mark.parametrize("quality", ["original", "compressed"])
def test_random_frame(benchmark: Any, video: tuple[Path, VideoInfo], quality: str) -> None:
    path, info = video
    positions = iter(random.Random(7).choices(range(FRAMES), k=100))

    def one() -> bytes:
        data, mime = build_video_frame(
            path, info, next(positions), quality=quality, image_quality=QUALITY  # type: ignore[arg-type]
        )
        assert mime == "image/png"
        return data

    ours = run_ours(benchmark, one, rounds=21)
    report(benchmark, median_s=ours)
    assert ours <= 0.150, f"random {quality} frame median {ours * 1000:.0f} ms"


# ------------------------------------------------------------------ encoder choices
@pytest.fixture(scope="module")
def frame_rgb(video: tuple[Path, VideoInfo]) -> np.ndarray:
    path, _ = video
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 40:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("video too short")


def _pil_jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=QUALITY, optimize=True)
    return buf.getvalue()


def _cv2_jpeg(rgb: np.ndarray) -> bytes:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1].tobytes()


def _simplejpeg(rgb: np.ndarray) -> bytes:
    return simplejpeg.encode_jpeg(rgb, QUALITY, colorspace="RGB", colorsubsampling="420")


def _cv2_png(rgb: np.ndarray) -> bytes:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()


def _pil_png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


@pytest.mark.parametrize(
    "encoder",
    [_simplejpeg, _cv2_jpeg, _pil_jpeg, encode_png, _cv2_png, _pil_png],
    ids=[
        "jpeg-simplejpeg",
        "jpeg-opencv",
        "jpeg-pillow-optimize",
        "png-ours-isal",
        "png-opencv-1",
        "png-pillow-1",
    ],
)
def test_encoders(benchmark: Any, frame_rgb: np.ndarray, encoder: Callable[..., bytes]) -> None:
    data = benchmark(encoder, frame_rgb)
    benchmark.extra_info["bytes"] = len(data)
