"""Chunk, frame, preview and context-image builders against real generated media.

Images are made here with Pillow, videos with PyAV (small sizes); the outputs are
decoded with Pillow/PyAV and checked against what spec §3, §4 and §5.2 promise.
"""

from __future__ import annotations

import io
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import mediagen
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from framesvc.media.chunks import (
    build_frame,
    build_image_chunk,
    build_placeholder_chunk,
    build_video_chunk,
    build_video_frame,
    compressed_frame_size,
)
from framesvc.media.context import build_context_zip, context_entry_names
from framesvc.media.encode import (
    MAX_MP4_PIXELS,
    VideoTooLargeError,
    compressed_scale_factor,
    mp4_geometry,
    quality_to_qp,
)
from framesvc.media.images import load_image, original_entry, to_chunk_mode
from framesvc.media.limits import MediaLimits
from framesvc.media.preview import build_preview
from framesvc.media.probe import index_video
from framesvc.media.video import decode_frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def luma_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of luma only: 4:2:0 JPEG/H.264 chroma subsampling blurs colour edges by design."""
    weights = np.array([0.299, 0.587, 0.114])
    return psnr(a.astype(np.float64) @ weights, b.astype(np.float64) @ weights)


def pattern(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients with a few blocks: compressible, but not flat."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (xx * 255 // max(1, width - 1) + seed * 37) % 256
    img[..., 1] = (yy * 255 // max(1, height - 1) + seed * 11) % 256
    img[..., 2] = ((xx // 16 + yy // 16 + seed) % 2) * 60 + 90
    return img


def save(path: Path, image: Image.Image, fmt: str | None = None, **kw: object) -> Path:
    image.save(path, fmt, **kw)
    return path


def read_zip(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def exif_rotated_jpeg(path: Path, array: np.ndarray, orientation: int = 6) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


# ------------------------------------------------------------------ image modes
@pytest.fixture
def mode_images(tmp_path: Path) -> dict[str, Path]:
    rgb = pattern(64, 48)
    out: dict[str, Path] = {}
    out["RGB"] = save(tmp_path / "rgb.png", Image.fromarray(rgb))
    rgba = np.dstack([rgb, np.full((48, 64), 30, np.uint8)])
    out["RGBA"] = save(tmp_path / "rgba.png", Image.fromarray(rgba, "RGBA"))
    out["L"] = save(tmp_path / "gray.png", Image.fromarray(rgb[..., 0]))
    out["LA"] = save(tmp_path / "la.png", Image.fromarray(rgba[..., [0, 3]], "LA"))
    out["P"] = save(tmp_path / "pal.png", Image.fromarray(rgb).quantize(16))
    out["1"] = save(tmp_path / "bw.png", Image.fromarray(rgb[..., 0] > 128))
    out["CMYK"] = save(tmp_path / "cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), quality=95)
    i32 = (np.arange(64 * 48, dtype=np.int32).reshape(48, 64) * 7) + 5
    out["I"] = save(tmp_path / "i32.tif", Image.fromarray(i32, "I"))
    i16 = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 3 + 1000).astype(np.uint16)
    out["I;16"] = save(tmp_path / "i16.png", Image.fromarray(i16))
    out["F"] = save(tmp_path / "f.tif", Image.fromarray(rgb[..., 1].astype(np.float32)))
    return out


def test_mode_conversions_follow_cvat(mode_images: dict[str, Path]) -> None:
    for mode, path in mode_images.items():
        with load_image(path) as img:
            if mode != "CMYK":
                assert img.mode == mode, (mode, img.mode)
            converted = to_chunk_mode(img)
            expected_mode = "L" if mode == "L" else "RGB"
            if mode == "I;16":
                expected_mode = "L"
            assert converted.mode == expected_mode, mode
            assert converted.size == (64, 48)
            if mode in ("RGBA", "LA"):
                # alpha dropped, not composited: colour channels unchanged
                src = np.asarray(img.convert("RGBA" if mode == "RGBA" else "LA"))
                got = np.asarray(converted)
                if mode == "RGBA":
                    assert np.array_equal(got, src[..., :3])
                else:
                    assert np.array_equal(got[..., 0], src[..., 0])
            if mode == "I":
                data = np.asarray(img, dtype=np.float64)
                expected = np.clip((data * (256 / data.max())).astype(np.int32), 0, 255)
                assert np.array_equal(np.asarray(converted)[..., 0], expected.astype(np.uint8))
            if mode == "I;16":
                data = np.asarray(img).astype(np.float64)
                data = (data - data.min()) * (255 / (data.max() - data.min()))
                expected = ImageOps.equalize(Image.fromarray(data.astype(np.uint8), "L"))
                assert np.array_equal(np.asarray(converted), np.asarray(expected))


def test_compressed_image_chunk(mode_images: dict[str, Path]) -> None:
    sources = list(mode_images.values())
    out = io.BytesIO()
    assert build_image_chunk(sources, "compressed", 80, out) == "application/zip"
    entries = read_zip(out.getvalue())
    assert [i.filename for i, _ in entries] == [f"{n:06d}.jpeg" for n in range(len(sources))]
    assert all(i.compress_type == zipfile.ZIP_STORED for i, _ in entries)
    for (info, data), (mode, path) in zip(entries, mode_images.items(), strict=True):
        with Image.open(io.BytesIO(data)) as jpeg:
            assert jpeg.format == "JPEG"
            assert jpeg.mode == ("L" if mode in ("L", "I;16") else "RGB"), info.filename
            with load_image(path) as src:
                reference = np.asarray(to_chunk_mode(src))
            assert psnr(np.asarray(jpeg), reference) > 30, mode


def test_original_image_chunk_keeps_bytes_and_extension_case(tmp_path: Path) -> None:
    png = save(tmp_path / "a.PNG", Image.fromarray(pattern(40, 30)))
    jpg = save(tmp_path / "b.jpg", Image.fromarray(pattern(40, 30, 1)), quality=90)
    bmp = save(tmp_path / "c.bmp", Image.fromarray(pattern(40, 30, 2)))
    out = io.BytesIO()
    build_image_chunk([png, jpg, None, bmp], "original", 50, out)
    entries = read_zip(out.getvalue())
    names = [i.filename for i, _ in entries]
    assert names == ["000000.PNG", "000001.jpg", "000002.jpeg", "000003.bmp"]
    assert entries[0][1] == png.read_bytes()
    assert entries[1][1] == jpg.read_bytes()
    assert entries[3][1] == bmp.read_bytes()
    with Image.open(io.BytesIO(entries[2][1])) as placeholder:
        assert placeholder.size == (1, 1)
        assert placeholder.getpixel((0, 0)) == (0, 0, 0)


def test_original_exif_rotated_and_tiff_are_resaved(tmp_path: Path) -> None:
    src = pattern(40, 30)
    rotated = exif_rotated_jpeg(tmp_path / "r.jpg", src, orientation=6)
    tiff = save(tmp_path / "t.tiff", Image.fromarray(src))
    data, ext = original_entry(rotated)
    assert ext == ".jpg"
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG"
        assert img.size == (30, 40)  # orientation 6 = rotate 90° clockwise
        assert img.getexif().get(0x0112, 1) == 1
        expected = np.rot90(src, 3)
        assert psnr(np.asarray(img), expected) > 35
    data, ext = original_entry(tiff)
    assert ext == ".tiff"
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "TIFF"
        assert img.info.get("compression") == "tiff_lzw"
        assert np.array_equal(np.asarray(img), src)


def test_compressed_applies_exif_orientation(tmp_path: Path) -> None:
    src = pattern(40, 30)
    for orientation, expected in [
        (3, np.rot90(src, 2)),
        (6, np.rot90(src, 3)),
        (8, np.rot90(src, 1)),
    ]:
        path = exif_rotated_jpeg(tmp_path / f"o{orientation}.jpg", src, orientation)
        data, mime = build_frame(path, "compressed", 95)
        assert mime == "image/jpeg"
        with Image.open(io.BytesIO(data)) as img:
            assert img.size == (expected.shape[1], expected.shape[0])
            assert psnr(np.asarray(img), expected) > 30


def test_truncated_image_is_accepted_without_global_flag(tmp_path: Path) -> None:
    full = tmp_path / "full.jpg"
    Image.fromarray(pattern(64, 48)).save(full, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    out = io.BytesIO()
    build_image_chunk([cut], "compressed", 70, out)
    [(_, data)] = read_zip(out.getvalue())
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (64, 48)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with Image.open(cut) as strict, pytest.raises(OSError, match="truncated"):
        strict.load()  # Pillow's default still refuses it


def test_image_frame_equals_chunk_entry(tmp_path: Path) -> None:
    path = save(tmp_path / "x.webp", Image.fromarray(pattern(50, 20)), lossless=True)
    for quality, ext, mime in [
        ("compressed", ".jpeg", "image/jpeg"),
        ("original", ".webp", "image/webp"),
    ]:
        out = io.BytesIO()
        build_image_chunk([path], quality, 60, out)
        [(info, entry)] = read_zip(out.getvalue())
        assert info.filename == "000000" + ext
        data, got_mime = build_frame(path, quality, 60)
        assert data == entry
        assert got_mime == mime


def test_point_cloud_entries_are_raw(tmp_path: Path) -> None:
    pcd = tmp_path / "scene.pcd"
    pcd.write_bytes(b"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nPOINTS 0\nDATA ascii\n")
    for quality in ("compressed", "original"):
        out = io.BytesIO()
        build_image_chunk([pcd], quality, 70, out)
        [(info, data)] = read_zip(out.getvalue())
        assert info.filename == "000000.pcd"
        assert data == pcd.read_bytes()
    assert build_frame(pcd, "original", 70)[1] == "image/x.point-cloud-data"


def test_placeholder_chunk() -> None:
    out = io.BytesIO()
    build_placeholder_chunk(3, out)
    entries = read_zip(out.getvalue())
    assert [i.filename for i, _ in entries] == ["000000.jpeg", "000001.jpeg", "000002.jpeg"]
    for _, data in entries:
        with Image.open(io.BytesIO(data)) as img:
            assert img.size == (1, 1)


# ------------------------------------------------------------------ previews, context
def test_image_preview_fits_256_and_handles_exif(tmp_path: Path) -> None:
    wide = save(tmp_path / "wide.jpg", Image.fromarray(pattern(640, 200)), quality=90)
    rotated = exif_rotated_jpeg(tmp_path / "rot.jpg", pattern(600, 300), orientation=6)
    small = save(tmp_path / "small.png", Image.fromarray(pattern(100, 80)))
    gray16 = save(
        tmp_path / "g16.png",
        Image.fromarray((np.arange(300 * 300).reshape(300, 300) % 4096).astype(np.uint16)),
    )
    for path, size in [
        (wide, (256, 80)),
        (rotated, (128, 256)),
        (small, (100, 80)),
        (gray16, (256, 256)),
    ]:
        out = io.BytesIO()
        assert build_preview(path, out) == "image/jpeg"
        with Image.open(io.BytesIO(out.getvalue())) as img:
            assert img.format == "JPEG"
            assert img.size == size, path.name


def test_context_zip(tmp_path: Path) -> None:
    base = tmp_path / "related_images" / "img_png"
    (base / "sub").mkdir(parents=True)
    cam2 = save(base / "cam2.png", Image.fromarray(pattern(32, 24, 2)))
    cam1 = save(base / "cam1.bmp", Image.fromarray(pattern(32, 24, 1)).convert("P"))
    deep = save(base / "sub" / "cam3.jpg", Image.fromarray(pattern(32, 24, 3)), quality=95)
    rgba = save(
        base / "cam1.png",
        Image.fromarray(np.dstack([pattern(32, 24), np.zeros((24, 32), np.uint8)]), "RGBA"),
    )
    out = io.BytesIO()
    assert build_context_zip([cam2, deep, cam1, rgba], out) == "application/zip"
    entries = read_zip(out.getvalue())
    names = [i.filename for i, _ in entries]
    assert names == ["cam1.jpg", "cam1.png.jpg", "cam2.jpg", "sub/cam3.jpg"]
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i, _ in entries)
    for _, data in entries:
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "JPEG" and img.mode == "RGB" and img.size == (32, 24)
    with Image.open(io.BytesIO(entries[2][1])) as img:
        assert luma_psnr(np.asarray(img), pattern(32, 24, 2)) > 40  # quality 100
    assert context_entry_names(["/a/x.png"]) == ["x.jpg"]


# ------------------------------------------------------------------ mp4 parameters
def test_quality_to_qp_matches_cvat() -> None:
    table = {100: 0, 95: 3, 80: 10, 70: 15, 67: 17, 50: 26, 1: 51}
    assert {q: quality_to_qp(q) for q in table} == table


def test_downscale_rule_and_even_sizes() -> None:
    assert [compressed_scale_factor(h) for h in (720, 1079, 1080, 1440, 2160)] == [1, 1, 2, 2, 4]
    assert mp4_geometry(1280, 720, compressed=True) == (1280, 720)
    assert mp4_geometry(1920, 1080, compressed=True) == (960, 540)
    assert mp4_geometry(3840, 2160, compressed=True) == (960, 540)
    assert mp4_geometry(1920, 1080, compressed=False) == (1920, 1080)
    assert mp4_geometry(101, 75, compressed=False) == (102, 76)
    assert mp4_geometry(1921, 1081, compressed=True) == (960, 540)
    with pytest.raises(VideoTooLargeError):
        mp4_geometry(4096, 2305, compressed=False)
    assert MAX_MP4_PIXELS == 9_437_184
    assert mp4_geometry(4096, 2304, compressed=False) == (4096, 2304)


# ------------------------------------------------------------------ video chunks
def make_video(
    path: Path, width: int, height: int, frames: int, *, gop: int = 12, rotate: int | None = None
) -> Path:
    """A small H.264 clip with B-frames whose frames differ (a moving pattern)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(gop), "bf": "2", "preset": "ultrafast", "crf": "18"}
        if rotate is not None:
            stream.metadata["rotate"] = str(rotate)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(width, height, i), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    path = make_video(tmp_path_factory.mktemp("v") / "v.mp4", 160, 120, 40)
    return path, index_video(path, MediaLimits())


def source_frames(path: Path, info: object, frames: list[int]) -> dict[int, np.ndarray]:
    return dict(decode_frames(path, info, frames))  # type: ignore[arg-type]


def decode_mp4(data: bytes) -> tuple[list[np.ndarray], av.VideoStream]:
    container = av.open(io.BytesIO(data))
    stream = container.streams.video[0]
    frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return frames, stream


@pytest.mark.parametrize("quality", ["compressed", "original"])
def test_mp4_chunk(small_video: tuple[Path, object], quality: str) -> None:
    path, info = small_video
    wanted = list(range(10, 30))
    out = io.BytesIO()
    mime = build_video_chunk(
        path,
        info,
        wanted,
        kind="mp4",
        quality=quality,
        image_quality=70,
        out=out,  # type: ignore[arg-type]
    )
    assert mime == "video/mp4"
    frames, stream = decode_mp4(out.getvalue())
    assert len(frames) == len(wanted)
    assert stream.codec_context.name == "h264"
    assert stream.codec_context.profile in ("Baseline", "Constrained Baseline")
    assert stream.average_rate == 25
    assert (stream.width, stream.height) == (160, 120)
    source = source_frames(path, info, wanted)
    bound = 30 if quality == "compressed" else 45
    for got, n in zip(frames, wanted, strict=True):
        assert psnr(got, source[n]) >= bound, n


def test_mp4_chunk_is_downscaled_and_even(tmp_path: Path) -> None:
    path = make_video(tmp_path / "tall.mp4", 64, 1080, 4, gop=4)
    info = index_video(path, MediaLimits())
    out = io.BytesIO()
    build_video_chunk(
        path, info, [0, 1, 2, 3], kind="mp4", quality="compressed", image_quality=70, out=out
    )
    frames, stream = decode_mp4(out.getvalue())
    assert (stream.width, stream.height) == (32, 540)
    assert len(frames) == 4
    # libx264 needs even input sizes; an odd-sized source is made with MJPEG.
    odd = tmp_path / "odd.mkv"
    with av.open(str(odd), "w") as out_c:
        s = out_c.add_stream("mjpeg", rate=25)
        s.width, s.height, s.pix_fmt = 65, 49, "yuvj420p"
        for i in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(pattern(65, 49, i), format="rgb24")):
                out_c.mux(p)
        for p in s.encode():
            out_c.mux(p)
    info = index_video(odd, MediaLimits())
    out = io.BytesIO()
    build_video_chunk(
        odd, info, [0, 1, 2], kind="mp4", quality="original", image_quality=70, out=out
    )
    frames, stream = decode_mp4(out.getvalue())
    assert (stream.width, stream.height) == (66, 50)
    assert len(frames) == 3


@pytest.mark.parametrize("quality", ["compressed", "original"])
def test_video_zip_chunk_with_placeholders(small_video: tuple[Path, object], quality: str) -> None:
    path, info = small_video
    plan = [3, None, 17, 5, None, 39]
    out = io.BytesIO()
    build_video_chunk(path, info, plan, kind="zip", quality=quality, image_quality=75, out=out)  # type: ignore[arg-type]
    entries = read_zip(out.getvalue())
    assert [i.filename for i, _ in entries] == [f"{n:06d}.jpeg" for n in range(len(plan))]
    source = source_frames(path, info, [f for f in plan if f is not None])
    for (_, data), n in zip(entries, plan, strict=True):
        with Image.open(io.BytesIO(data)) as img:
            if n is None:
                assert img.size == (1, 1)
                continue
            assert img.size == (160, 120)
            bound = 30 if quality == "compressed" else 40
            assert luma_psnr(np.asarray(img), source[n]) >= bound


def test_video_frames(small_video: tuple[Path, object], tmp_path: Path) -> None:
    path, info = small_video
    exact = source_frames(path, info, [21])[21]
    data, mime = build_video_frame(path, info, 21, quality="original", image_quality=70)  # type: ignore[arg-type]
    assert mime == "image/png"
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        assert np.array_equal(np.asarray(img), exact)  # PNG is lossless
    data, mime = build_video_frame(path, info, 21, quality="compressed", image_quality=70)  # type: ignore[arg-type]
    assert mime == "image/png"
    data, mime = build_video_frame(
        path,
        info,
        21,
        quality="compressed",
        image_quality=70,
        compressed_chunk_type="imageset",  # type: ignore[arg-type]
    )
    assert mime == "image/jpeg"
    with Image.open(io.BytesIO(data)) as img:
        assert psnr(np.asarray(img), exact) > 30
    big = make_video(tmp_path / "big.mp4", 96, 1080, 2, gop=2)
    big_info = index_video(big, MediaLimits())
    assert compressed_frame_size(big_info) == (48, 540)
    data, _ = build_video_frame(big, big_info, 1, quality="compressed", image_quality=70)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (48, 540)
    data, _ = build_video_frame(big, big_info, 1, quality="original", image_quality=70)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (96, 1080)


def test_video_preview(small_video: tuple[Path, object]) -> None:
    path, info = small_video
    out = io.BytesIO()
    assert build_preview(path, out, info=info, frame=7) == "image/jpeg"  # type: ignore[arg-type]
    with Image.open(io.BytesIO(out.getvalue())) as img:
        assert img.size == (160, 120)  # never upscaled
        reference = source_frames(path, info, [7])[7]
        assert psnr(np.asarray(img), reference) > 28


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    out = tmp_path_factory.mktemp("gen")
    paths = {
        "rotated_90": mediagen.rotated(out, 90),
        "rotated_270": mediagen.rotated(out, 270),
        "hevc_10bit": mediagen.hevc_10bit(out),
        "vfr_mkv": mediagen.vfr(out, "mkv"),
        "mjpeg_avi": mediagen.mjpeg(out, "avi"),
        "odd_size": mediagen.odd_size(out),
        "h264_avi_bframes": mediagen.h264_avi_bframes(out),
    }
    return {name: (path, index_video(path, MediaLimits())) for name, path in paths.items()}


@pytest.mark.parametrize(
    "kind",
    [
        "rotated_90",
        "rotated_270",
        "hevc_10bit",
        "vfr_mkv",
        "mjpeg_avi",
        "odd_size",
        "h264_avi_bframes",
    ],
)
@pytest.mark.parametrize("chunk_kind", ["mp4", "zip"])
def test_chunks_of_every_source_kind_hold_the_right_frames(
    generated: dict[str, tuple[Path, object]], kind: str, chunk_kind: str
) -> None:
    path, info = generated[kind]
    count = info.frame_count  # type: ignore[attr-defined]
    plan = list(range(count // 2, min(count, count // 2 + 8)))
    out = io.BytesIO()
    build_video_chunk(
        path,
        info,
        plan,
        kind=chunk_kind,
        quality="compressed",
        image_quality=80,
        out=out,  # type: ignore[arg-type]
    )
    width, height = info.width, info.height  # type: ignore[attr-defined]
    if chunk_kind == "mp4":
        frames, stream = decode_mp4(out.getvalue())
        assert (stream.width, stream.height) == mp4_geometry(width, height, compressed=True)
    else:
        frames = [np.asarray(Image.open(io.BytesIO(data))) for _, data in read_zip(out.getvalue())]
        assert all(f.shape[:2] == (height, width) for f in frames)
    assert len(frames) == len(plan)
    numbers = [mediagen.read_frame_number(f, info.rotation) for f in frames]  # type: ignore[attr-defined]
    reference = [
        mediagen.read_frame_number(a, info.rotation)  # type: ignore[attr-defined]
        for _, a in decode_frames(path, info, plan)  # type: ignore[arg-type]
    ]
    assert numbers == reference
    assert numbers == list(range(numbers[0], numbers[0] + len(plan)))
