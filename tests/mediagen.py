"""Deterministic test media, generated with PyAV and Pillow into a given directory.

Every video frame and every image carries its number as a 4x4 grid of black/white
cells (16 bits, least significant bit top-left), under a red|blue stripe that shows
which way is up.  The cells are large flat areas, so the number survives lossy
codecs, chroma subsampling and downscaling: :func:`read_frame_number` recovers it
from a decoded RGB array, which is how tests check frame-exact decoding.

Generators are small by default (64x48, a few dozen frames), take sizes and frame
counts as parameters, write files named after what they contain and return the
path(s).  Encoders run single-threaded with fixed GOPs (no scene-cut decisions), so
the same call writes the same bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import stat
import struct
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

__all__ = [
    "EncoderUnavailable",
    "frame_pattern",
    "have_encoder",
    "read_frame_number",
]

Size = tuple[int, int]
SMALL: Size = (64, 48)
FRAME_BITS = 16
_GRID = 4  # 4x4 cells = 16 bits
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


class EncoderUnavailable(RuntimeError):
    """The FFmpeg build lacks every encoder that could make this file."""


def have_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------- pattern


def _cell_bounds(length: int, parts: int) -> list[tuple[int, int]]:
    edges = [round(i * length / parts) for i in range(parts + 1)]
    return list(itertools.pairwise(edges))


def frame_pattern(index: int, size: Size = SMALL) -> np.ndarray:
    """An RGB ``(height, width, 3)`` uint8 picture of frame number ``index``.

    Layout: the top fifth is a red (left) | blue (right) orientation stripe; the rest
    is a 4x4 grid whose cell ``k`` (row-major) is white when bit ``k`` is set.
    """
    if not 0 <= index < 2**FRAME_BITS:
        raise ValueError(f"frame number {index} does not fit in {FRAME_BITS} bits")
    width, height = size
    out = np.zeros((height, width, 3), np.uint8)
    stripe = max(1, height // 5)
    out[:stripe, : width // 2] = (220, 20, 20)
    out[:stripe, width // 2 :] = (20, 20, 220)
    rows = _cell_bounds(height - stripe, _GRID)
    cols = _cell_bounds(width, _GRID)
    for r, (y0, y1) in enumerate(rows):
        for c, (x0, x1) in enumerate(cols):
            if index >> (r * _GRID + c) & 1:
                out[stripe + y0 : stripe + y1, x0:x1] = 235
            else:
                out[stripe + y0 : stripe + y1, x0:x1] = 16
    return out


def read_frame_number(rgb: np.ndarray, rotation: int = 0) -> int:
    """The frame number drawn by :func:`frame_pattern` in a decoded picture.

    ``rotation`` is the counter-clockwise display rotation already applied to ``rgb``
    (``np.rot90(picture, rotation // 90)``); it is undone first.  Works on RGB
    (H, W, 3) and gray (H, W) arrays of any integer depth.
    """
    arr = np.asarray(rgb)
    if rotation % 360:
        arr = np.rot90(arr, -(rotation % 360) // 90)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=2)
    arr = arr.astype(np.float64)
    if arr.max() > 255:  # 16-bit sources
        arr = arr / 257.0
    height, width = arr.shape
    stripe = max(1, height // 5)
    rows = _cell_bounds(height - stripe, _GRID)
    cols = _cell_bounds(width, _GRID)
    value = 0
    for r, (y0, y1) in enumerate(rows):
        for c, (x0, x1) in enumerate(cols):
            # The centre half of the cell: edges blur under lossy compression.
            qy, qx = max((y1 - y0) // 4, 0), max((x1 - x0) // 4, 0)
            cell = arr[stripe + y0 + qy : stripe + y1 - qy, x0 + qx : x1 - qx]
            if cell.size and cell.mean() > 128:
                value |= 1 << (r * _GRID + c)
    return value


# --------------------------------------------------------------------------- videos


def write_video(
    path: Path,
    *,
    codec: str,
    frames: int = 24,
    size: Size = SMALL,
    rate: int = 25,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    container_format: str | None = None,
    rotation: int = 0,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    first_index: int = 0,
) -> Path:
    """Encode ``frames`` pattern frames (numbers ``first_index``...) into ``path``.

    ``pts`` (in ``time_base``, default ``1/rate``) gives explicit timestamps, e.g. for
    variable frame rate; ``rotation`` (counter-clockwise degrees) is written as the
    stream's display matrix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tb = time_base or Fraction(1, rate)
    with av.open(
        str(path), "w", format=container_format, options=container_options or {}
    ) as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = tb
        stream.codec_context.thread_count = 1
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(first_index + i, size), "rgb24")
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = tb
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _x264(keyint: int, bframes: int, extra: str = "") -> dict[str, str]:
    params = f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes={bframes}"
    return {"preset": "veryfast", "x264-params": params + (f":{extra}" if extra else "")}


def h264_bframes(
    out: Path, frames: int = 48, size: Size = SMALL, gop: int = 12, bframes: int = 3
) -> Path:
    """H.264 in MP4 with B-frames (pyramid) and a fixed closed GOP."""
    return write_video(
        out / "h264_bframes.mp4", codec="libx264", frames=frames, size=size,
        options=_x264(gop, bframes),
    )


def h264_open_gop(out: Path, frames: int = 48, size: Size = SMALL, gop: int = 12) -> Path:
    """H.264 in MP4 with x264's open GOP: keyframes followed by leading B-frames."""
    return write_video(
        out / "h264_open_gop.mp4", codec="libx264", frames=frames, size=size,
        options=_x264(gop, 3, "open-gop=1"),
    )


def h264_open_gop_mkv(out: Path, frames: int = 48, size: Size = SMALL, gop: int = 12) -> Path:
    """The same open-GOP stream in Matroska (seeks by pts cues instead of MP4's dts)."""
    return write_video(
        out / "h264_open_gop.mkv", codec="libx264", frames=frames, size=size,
        options=_x264(gop, 3, "open-gop=1"),
    )


def hevc(
    out: Path, frames: int = 40, size: Size = SMALL, gop: int = 12, ext: str = "mp4"
) -> Path:
    """HEVC (libx265) in MP4 or MKV: CRA keyframes (open GOP) with RASL leading pictures."""
    params = (
        f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=3:log-level=error"
        ":pools=1:frame-threads=1"
    )
    return write_video(
        out / f"hevc.{ext}", codec="libx265", frames=frames, size=size,
        options={"preset": "veryfast", "x265-params": params},
    )


def hevc_closed(out: Path, frames: int = 40, size: Size = SMALL, gop: int = 12) -> Path:
    """HEVC (libx265) in MP4 with closed GOPs (IDR keyframes, no leading pictures)."""
    params = (
        f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=3:open-gop=0:log-level=error"
        ":pools=1:frame-threads=1"
    )
    return write_video(
        out / "hevc_closed.mp4", codec="libx265", frames=frames, size=size,
        options={"preset": "veryfast", "x265-params": params},
    )


def hevc_10bit(out: Path, frames: int = 24, size: Size = SMALL, gop: int = 12) -> Path:
    """10-bit HEVC (yuv420p10le, Main 10) in MP4."""
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error:pools=1:frame-threads=1"
    return write_video(
        out / "hevc_10bit.mp4", codec="libx265", frames=frames, size=size,
        pix_fmt="yuv420p10le", options={"preset": "veryfast", "x265-params": params},
    )


def vp9(out: Path, frames: int = 40, size: Size = SMALL, gop: int = 12) -> Path:
    """VP9 in WebM (hidden alt-ref frames ride in superframes)."""
    return write_video(
        out / "vp9.webm", codec="libvpx-vp9", frames=frames, size=size,
        options={"g": str(gop), "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"},
    )


def odd_size(out: Path, frames: int = 24, size: Size = (321, 241), gop: int = 12) -> Path:
    """Odd dimensions (321x241), VP9 in WebM (4:2:0 with odd sizes is legal there)."""
    return write_video(
        out / f"odd_{size[0]}x{size[1]}.webm", codec="libvpx-vp9", frames=frames, size=size,
        options={"g": str(gop), "deadline": "realtime", "cpu-used": "8"},
    )


def av1(out: Path, frames: int = 30, size: Size = SMALL, gop: int = 12) -> Path:
    """AV1 in Matroska with SVT-AV1 or libaom; ``EncoderUnavailable`` if neither exists."""
    if have_encoder("libsvtav1"):
        codec, options = "libsvtav1", {"g": str(gop), "preset": "12", "svtav1-params": "lp=1"}
    elif have_encoder("libaom-av1"):
        codec, options = "libaom-av1", {"g": str(gop), "cpu-used": "8", "usage": "realtime"}
    else:
        raise EncoderUnavailable("no AV1 encoder (libsvtav1, libaom-av1) in this FFmpeg")
    return write_video(
        out / "av1.mkv", codec=codec, frames=frames, size=size, options=options
    )


def mjpeg(out: Path, ext: str = "avi", frames: int = 24, size: Size = SMALL) -> Path:
    """Motion JPEG (all intra) in AVI or MOV."""
    return write_video(
        out / f"mjpeg.{ext}", codec="mjpeg", frames=frames, size=size, pix_fmt="yuvj420p",
        options={"q:v": "3"},
    )


def rotated(out: Path, degrees: int, frames: int = 12, size: Size = SMALL) -> Path:
    """H.264 in MP4 whose display matrix rotates by ``degrees`` counter-clockwise."""
    return write_video(
        out / f"rotated_{degrees}.mp4", codec="libx264", frames=frames, size=size,
        options=_x264(12, 2), rotation=degrees,
    )


#: Frame durations (ms) cycled by :func:`vfr`: nothing like a constant rate.
VFR_STEPS_MS = (33, 10, 70, 20, 50, 41)


def vfr(out: Path, ext: str = "mp4", frames: int = 36, size: Size = SMALL) -> Path:
    """Variable frame rate: explicit irregular pts (1 ms time base), H.264 with B-frames."""
    pts, t = [], 0
    for i in range(frames):
        pts.append(t)
        t += VFR_STEPS_MS[i % len(VFR_STEPS_MS)]
    return write_video(
        out / f"vfr.{ext}", codec="libx264", frames=frames, size=size, rate=30,
        options=_x264(12, 2), pts=pts, time_base=Fraction(1, 1000),
    )


def negative_start(out: Path, frames: int = 36, size: Size = SMALL, lead: int = 5) -> Path:
    """H.264 in MP4 whose first ``lead`` frames have negative pts: the muxer writes an
    edit list and the demuxer flags those packets discard (decoders drop them)."""
    return write_video(
        out / "negative_start.mp4", codec="libx264", frames=frames, size=size,
        options=_x264(12, 2), pts=[i - lead for i in range(frames)],
    )


def shifted_start(out: Path, frames: int = 36, size: Size = SMALL, offset: int = 7) -> Path:
    """H.264 in MP4 without an edit list whose pts start at ``offset`` frames, not 0."""
    return write_video(
        out / "shifted_start.mp4", codec="libx264", frames=frames, size=size,
        options=_x264(12, 2), pts=[i + offset for i in range(frames)],
        container_options={"use_editlist": "0"},
    )


def h264_avi_bframes(out: Path, frames: int = 40, size: Size = SMALL) -> Path:
    """H.264 with B-frames in AVI: the container stores no presentation timestamps."""
    return write_video(
        out / "h264_bframes.avi", codec="libx264", frames=frames, size=size,
        options=_x264(12, 2),
    )


def mpegts(out: Path, frames: int = 40, size: Size = SMALL) -> Path:
    """H.264 in MPEG-TS: no sample index; the demuxer seeks by timestamp search."""
    return write_video(
        out / "h264.ts", codec="libx264", frames=frames, size=size, options=_x264(12, 2),
    )


def raw_h264(out: Path, frames: int = 30, size: Size = SMALL) -> Path:
    """An H.264 elementary stream: no container, no timestamps at all."""
    return write_video(
        out / "raw.h264", codec="libx264", frames=frames, size=size, options=_x264(12, 2),
        container_format="h264",
    )


def two_video_streams(out: Path, frames: int = 20) -> Path:
    """Matroska with two video streams; the second one is marked default."""
    path = out / "two_streams.mkv"
    with av.open(str(path), "w") as container:
        first = container.add_stream("libx264", rate=25, options=_x264(10, 0))
        second = container.add_stream("mjpeg", rate=25)
        first.width, first.height = SMALL
        second.width, second.height = (32, 24)
        first.pix_fmt, second.pix_fmt = "yuv420p", "yuvj420p"
        for s in (first, second):
            s.codec_context.thread_count = 1
        second.disposition = av.stream.Disposition.default
        first.disposition = av.stream.Disposition(0)
        for i in range(frames):
            for s, size in ((first, SMALL), (second, (32, 24))):
                frame = av.VideoFrame.from_ndarray(frame_pattern(i, size), "rgb24")
                frame.pts = i
                for packet in s.encode(frame):
                    container.mux(packet)
        for s in (first, second):
            for packet in s.encode():
                container.mux(packet)
    return path


def audio_only(out: Path) -> Path:
    """An MP4 with one AAC audio stream and no video."""
    path = out / "audio_only.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        samples = np.zeros((1, 1024), np.float32)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 8000
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def video_suite(out: Path) -> dict[str, Path]:
    """Every well-formed video kind above, by name (AV1 only if an encoder exists)."""
    out.mkdir(parents=True, exist_ok=True)
    suite = {
        "h264_bframes": h264_bframes(out),
        "h264_open_gop": h264_open_gop(out),
        "h264_open_gop_mkv": h264_open_gop_mkv(out),
        "hevc": hevc(out),
        "hevc_mkv": hevc(out, ext="mkv"),
        "hevc_closed": hevc_closed(out),
        "hevc_10bit": hevc_10bit(out),
        "vp9": vp9(out),
        "odd_size": odd_size(out),
        "mjpeg_avi": mjpeg(out, "avi"),
        "mjpeg_mov": mjpeg(out, "mov"),
        "rotated_90": rotated(out, 90),
        "rotated_180": rotated(out, 180),
        "rotated_270": rotated(out, 270),
        "vfr_mp4": vfr(out, "mp4"),
        "vfr_mkv": vfr(out, "mkv"),
        "negative_start": negative_start(out),
        "shifted_start": shifted_start(out),
        "h264_avi_bframes": h264_avi_bframes(out),
        "mpegts": mpegts(out),
        "raw_h264": raw_h264(out),
        "two_streams": two_video_streams(out),
    }
    with contextlib.suppress(EncoderUnavailable):
        suite["av1"] = av1(out)
    return suite


# --------------------------------------------------------------------------- broken files


def truncated(src: Path, out: Path, keep: float = 0.6, name: str | None = None) -> Path:
    """A copy of ``src`` cut to ``keep`` of its length."""
    data = src.read_bytes()
    path = out / (name or f"truncated_{src.name}")
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


def bit_flipped(src: Path, out: Path, offsets: Iterable[int], name: str | None = None) -> Path:
    """A copy of ``src`` with the byte at each offset inverted (negative: from the end)."""
    data = bytearray(src.read_bytes())
    for offset in offsets:
        data[offset] ^= 0xFF
    path = out / (name or f"flipped_{src.name}")
    path.write_bytes(bytes(data))
    return path


def truncated_mp4(out: Path, faststart: bool = True, frames: int = 48) -> Path:
    """An MP4 cut in the middle of its media data.

    With ``faststart`` the sample table (moov) comes first and survives, so the file
    opens and promises more frames than it holds; without it the moov is lost.
    """
    src = write_video(
        out / f"whole_{'fast' if faststart else 'plain'}.mp4", codec="libx264", frames=frames,
        options=_x264(12, 2),
        container_options={"movflags": "+faststart"} if faststart else None,
    )
    return truncated(src, out, 0.6, f"truncated_{'fast' if faststart else 'plain'}.mp4")


def corrupt_mp4(out: Path) -> Path:
    """An MP4 whose box headers at the start are garbage (ftyp and moov sizes/types)."""
    src = write_video(
        out / "whole_for_corrupt.mp4", codec="libx264", frames=24, options=_x264(12, 2),
        container_options={"movflags": "+faststart"},
    )
    return bit_flipped(src, out, range(0, 64), "corrupt.mp4")


# --------------------------------------------------------------------------- images


def _exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def write_image(
    path: Path,
    index: int = 0,
    size: Size = SMALL,
    mode: str = "RGB",
    format: str | None = None,
    **save: Any,
) -> Path:
    """Save pattern ``index`` as an image in ``mode`` (converted from RGB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(frame_pattern(index, size), "RGB")
    if mode == "I;16":
        gray = np.asarray(rgb.convert("L"), np.uint16) * 257
        img = Image.fromarray(gray)  # uint16 -> "I;16"
    elif mode == "P":
        img = rgb.quantize(colors=8, method=Image.Quantize.MEDIANCUT)
    else:
        img = rgb.convert(mode)
    img.save(path, format=format, **save)
    return path


def jpeg_exif(out: Path, orientation: int, index: int = 0, size: Size = SMALL) -> Path:
    """A JPEG whose stored pixels are ``size`` with EXIF orientation 1..8."""
    return write_image(
        out / f"exif_{orientation}.jpg", index, size, "RGB", "JPEG",
        exif=_exif_with_orientation(orientation), quality=90,
    )


def png_exif(out: Path, orientation: int, index: int = 0, size: Size = SMALL) -> Path:
    """A PNG with an eXIf chunk carrying orientation (5..8 swap the display axes)."""
    return write_image(
        out / f"exif_{orientation}.png", index, size, "RGB", "PNG",
        exif=_exif_with_orientation(orientation),
    )


def image_suite(out: Path, size: Size = SMALL) -> dict[str, Path]:
    """One image per mode/format worth probing, by name; frame numbers 1, 2, ..."""
    out.mkdir(parents=True, exist_ok=True)
    entries: dict[str, tuple[str, str, str | None, dict[str, Any]]] = {
        "jpeg": ("plain.jpg", "RGB", "JPEG", {"quality": 90}),
        "jpeg_progressive": ("progressive.jpg", "RGB", "JPEG",
                             {"quality": 90, "progressive": True}),
        "jpeg_cmyk": ("cmyk.jpg", "CMYK", "JPEG", {"quality": 90}),
        "jpeg_gray": ("gray.jpg", "L", "JPEG", {"quality": 90}),
        "png_rgb": ("rgb.png", "RGB", "PNG", {}),
        "png_16bit": ("gray16.png", "I;16", "PNG", {}),
        "png_palette": ("palette.png", "P", "PNG", {"transparency": 0}),
        "png_rgba": ("rgba.png", "RGBA", "PNG", {}),
        "png_la": ("la.png", "LA", "PNG", {}),
        "bmp": ("image.bmp", "RGB", "BMP", {}),
        "tiff": ("image.tiff", "RGB", "TIFF", {"compression": "tiff_lzw"}),
        "webp": ("image.webp", "RGB", "WEBP", {"lossless": True}),
        "gif": ("image.gif", "P", "GIF", {}),
    }
    paths = {}
    for i, (key, (filename, mode, fmt, save)) in enumerate(entries.items(), start=1):
        paths[key] = write_image(out / filename, i, size, mode, fmt, **save)
    return paths


#: Pillow mode of each :func:`image_suite` entry after re-opening.
IMAGE_SUITE_MODES = {
    "jpeg": "RGB", "jpeg_progressive": "RGB", "jpeg_cmyk": "CMYK", "jpeg_gray": "L",
    "png_rgb": "RGB", "png_16bit": "I;16", "png_palette": "P", "png_rgba": "RGBA",
    "png_la": "LA", "bmp": "RGB", "tiff": "RGB", "webp": "RGB", "gif": "P",
}


def truncated_jpeg(out: Path) -> Path:
    src = write_image(out / "whole.jpg", 3, (160, 120), "RGB", "JPEG", quality=95)
    return truncated(src, out, 0.7, "truncated.jpg")


def truncated_png(out: Path) -> Path:
    src = write_image(out / "whole.png", 3, (160, 120), "RGB", "PNG")
    return truncated(src, out, 0.7, "truncated.png")


def corrupt_jpeg(out: Path) -> Path:
    """A JPEG whose SOI marker and first segment are destroyed (not identifiable)."""
    src = write_image(out / "whole_c.jpg", 5, (160, 120), "RGB", "JPEG", quality=95)
    return bit_flipped(src, out, range(0, 8), "corrupt.jpg")


def corrupt_png(out: Path) -> Path:
    """A PNG with one flipped byte inside its image data (a CRC mismatch)."""
    src = write_image(out / "whole_c.png", 5, (160, 120), "RGB", "PNG")
    return bit_flipped(src, out, [-20], "corrupt.png")


def jpeg_with_trailer(out: Path) -> Path:
    """A complete JPEG followed by unrelated bytes (as motion photos append an MP4)."""
    src = write_image(out / "trailer_base.jpg", 6, SMALL, "RGB", "JPEG", quality=90)
    path = out / "with_trailer.jpg"
    path.write_bytes(src.read_bytes() + b"\xff\xda" + bytes(range(256)) * 8)
    return path


def not_media(out: Path, name: str = "notes.png") -> Path:
    """A text file with an image extension."""
    path = out / name
    path.write_text("this is not an image\n" * 20)
    return path


# --------------------------------------------------------------------------- archives


def _zip_info(name: str, mode: int = stat.S_IFREG | 0o644) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.create_system = 3  # Unix: external_attr carries the mode
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_zip(path: Path, entries: Iterable[tuple[str, bytes]]) -> Path:
    """A zip of ``(name, data)`` entries, names taken verbatim (even hostile ones)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            zf.writestr(_zip_info(name), data)
    return path


def write_tar(path: Path, members: Iterable[tuple[tarfile.TarInfo, bytes | None]],
              compression: str = "") -> Path:
    """A tar (``compression`` "", "gz", "bz2" or "xz") of prepared members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    if compression == "gz":
        raw = gzip.compress(raw, mtime=0)
    elif compression == "bz2":
        import bz2

        raw = bz2.compress(raw)
    elif compression == "xz":
        import lzma

        raw = lzma.compress(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


def tar_file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1577836800, 0o644
    return info, data


def tar_link(name: str, target: str, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname, info.mtime = target, 1577836800
    return info, None


def tar_device(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor, info.mtime = tarfile.CHRTYPE, 1, 3, 1577836800
    return info, None


def _png_bytes(index: int, size: Size = SMALL) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame_pattern(index, size), "RGB").save(buf, "PNG")
    return buf.getvalue()


def _jpeg_bytes(index: int, size: Size = SMALL) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame_pattern(index, size), "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def zip_slip(out: Path) -> Path:
    return write_zip(out / "slip.zip", [("ok.png", _png_bytes(1)), ("../evil.txt", b"pwned")])


def zip_absolute(out: Path) -> Path:
    return write_zip(out / "absolute.zip", [("/tmp/framesvc_evil.txt", b"pwned")])


def zip_symlink(out: Path) -> Path:
    """A zip whose entry is a Unix symlink (mode in external_attr) to /etc/passwd."""
    path = out / "symlink.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(_zip_info("ok.png"), _png_bytes(1))
        zf.writestr(_zip_info("link.png", stat.S_IFLNK | 0o777), b"/etc/passwd")
    return path


def zip_duplicates(out: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name"
        return write_zip(
            out / "duplicates.zip", [("a/x.png", _png_bytes(1)), ("a/x.png", _png_bytes(2))]
        )


def zip_bomb(out: Path, megabytes: int = 16) -> Path:
    """One entry of zeros: ratio ~1000:1 (deflate's ceiling)."""
    return write_zip(out / "bomb.zip", [("zeros.bmp", bytes(megabytes * 1024 * 1024))])


def zip_lying_size(out: Path, megabytes: int = 2) -> Path:
    """An entry whose headers declare 1000 bytes but whose data inflates to more."""
    path = write_zip(out / "lying.zip", [("data.bin", bytes(megabytes * 1024 * 1024))])
    data = bytearray(path.read_bytes())
    real = megabytes * 1024 * 1024
    fake = struct.pack("<I", 1000)
    # Patch the uncompressed size in the local header (offset 22) and central directory.
    for offset in _find_all(data, b"PK\x03\x04"):
        if struct.unpack_from("<I", data, offset + 22)[0] == real:
            data[offset + 22 : offset + 26] = fake
    for offset in _find_all(data, b"PK\x01\x02"):
        if struct.unpack_from("<I", data, offset + 24)[0] == real:
            data[offset + 24 : offset + 28] = fake
    path.write_bytes(bytes(data))
    return path


def _find_all(data: bytes | bytearray, needle: bytes) -> list[int]:
    found, start = [], 0
    while (i := data.find(needle, start)) >= 0:
        found.append(i)
        start = i + 1
    return found


def zip_many(out: Path, count: int = 3000) -> Path:
    """``count`` tiny entries (entry-count limits)."""
    return write_zip(out / f"many_{count}.zip", ((f"f{i:05d}.txt", b"x") for i in range(count)))


def tar_slip(out: Path) -> Path:
    return write_tar(out / "slip.tar", [tar_file("ok.png", _png_bytes(1)),
                                        tar_file("../evil.txt", b"pwned")])


def tar_symlink(out: Path) -> Path:
    return write_tar(out / "symlink.tar.gz", [tar_file("ok.png", _png_bytes(1)),
                                              tar_link("link.png", "/etc/passwd")], "gz")


def tar_hardlink(out: Path) -> Path:
    return write_tar(out / "hardlink.tar", [tar_file("ok.png", _png_bytes(1)),
                                            tar_link("hard.png", "/etc/passwd", hard=True)])


def tar_devices(out: Path) -> Path:
    return write_tar(out / "device.tar", [tar_device("null")])


def tar_bomb(out: Path, megabytes: int = 16) -> Path:
    return write_tar(out / "bomb.tar.xz", [tar_file("zeros.bmp", bytes(megabytes << 20))], "xz")


# --------------------------------------------------------------------------- trees


#: Names (relative to the tree root) that :func:`related_tree` writes as scene images,
#: with the related images each must get (sorted).
RELATED_TREE_SCENES = {
    "scene/a.png": ["scene/related_images/a_png/cam1.jpg", "scene/related_images/a_png/cam2.png"],
    "scene/b.jpg": ["scene/related_images/b_jpg/sub/cam3.jpg"],
    "scene/c.jpeg": [],
    "top.png": ["related_images/top_png/front.png"],
}


def related_tree(out: Path) -> Path:
    """A directory of scene images with ``related_images/`` context images and the
    macOS litter CVAT ignores.  Returns the tree root."""
    root = out / "tree"
    for i, name in enumerate(RELATED_TREE_SCENES, start=1):
        data = _png_bytes(i) if name.endswith(".png") else _jpeg_bytes(i)
        _write(root / name, data)
    for j, names in enumerate(RELATED_TREE_SCENES.values(), start=100):
        for name in names:
            _write(root / name, _png_bytes(j) if name.endswith(".png") else _jpeg_bytes(j))
    # A related folder that matches no scene image, and a non-image among related files.
    _write(root / "scene/related_images/zzz_png/orphan.png", _png_bytes(200))
    _write(root / "scene/related_images/a_png/readme.txt", b"calibration notes")
    # Junk.
    _write(root / "__MACOSX/scene/._a.png", b"\x00\x05\x16\x07apple double")
    _write(root / "scene/.DS_Store", b"\x00\x00\x00\x01Bud1")
    _write(root / "scene/._b.jpg", b"\x00\x05\x16\x07apple double")
    _write(root / "._.DS_Store", b"\x00\x05\x16\x07")
    return root


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def zip_of_tree(root: Path, path: Path) -> Path:
    """A zip of every file under ``root`` (sorted, deterministic)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return write_zip(path, ((p.relative_to(root).as_posix(), p.read_bytes()) for p in files))


def tar_of_tree(root: Path, path: Path, compression: str = "") -> Path:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return write_tar(
        path, (tar_file(p.relative_to(root).as_posix(), p.read_bytes()) for p in files),
        compression,
    )
