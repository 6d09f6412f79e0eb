"""Hostile media, generated on the fly: files that lie about what or how big they are.

Each generator writes one small file (a few KiB unless the point is size) into a given
folder and returns its path.  Headers are crafted byte by byte where Pillow or PyAV
would refuse to write the lie: a PNG whose IHDR declares 100000x100000 pixels holds a
few bytes of pixel data, a TIFF whose IFD points back at itself, an EXIF orientation of
-1.  The well-formed building blocks come from ``tests/mediagen.py``.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import mediagen
from mediagen import frame_pattern, write_video
from PIL import Image

SMALL = (64, 48)

# --------------------------------------------------------------------------- EXIF / TIFF

#: TIFF field types: (code, struct format of one value).
SHORT, LONG, SSHORT, UNDEFINED, ASCII = 3, 4, 8, 7, 2
_TYPE_SIZES = {1: 1, ASCII: 1, SHORT: 2, LONG: 4, 5: 8, 6: 1, UNDEFINED: 1, SSHORT: 2, 9: 4}


def ifd_entry(tag: int, type_: int, count: int, value: int | bytes) -> bytes:
    """One little-endian 12-byte IFD entry; ``value`` is the inline value or offset."""
    if isinstance(value, bytes):
        inline = value.ljust(4, b"\0")[:4]
    elif type_ in (SHORT, SSHORT) and count == 1:
        inline = struct.pack("<h" if type_ == SSHORT else "<H", value) + b"\0\0"
    else:
        inline = struct.pack("<I", value & 0xFFFFFFFF)
    return struct.pack("<HHI", tag, type_, count) + inline


def tiff_header_ifd(entries: Iterable[bytes], next_ifd: int = 0, tail: bytes = b"") -> bytes:
    """``II*\\0`` + the first IFD at offset 8 + ``tail`` (for out-of-line values)."""
    items = list(entries)
    ifd = struct.pack("<H", len(items)) + b"".join(items) + struct.pack("<I", next_ifd)
    return b"II*\0" + struct.pack("<I", 8) + ifd + tail


def exif_payload(tiff: bytes) -> bytes:
    """EXIF as JPEG APP1 and PNG eXIf carry it through Pillow's ``exif=``."""
    return b"Exif\0\0" + tiff


def exif_orientation(value: int, type_: int = SHORT) -> bytes:
    """Orientation ``value`` of ``type_`` (SSHORT -1, SHORT 65535, LONG 2**31 ...)."""
    return exif_payload(tiff_header_ifd([ifd_entry(0x0112, type_, 1, value)]))


def exif_orientation_huge_count() -> bytes:
    """An orientation entry claiming 2**30 SHORT values at an offset past the end."""
    return exif_payload(tiff_header_ifd([ifd_entry(0x0112, SHORT, 2**30, 0x7FFFFFF0)]))


def exif_recursive() -> bytes:
    """IFD0 whose EXIF and GPS sub-IFD pointers and next-IFD link all point at IFD0."""
    entries = [ifd_entry(0x0112, SHORT, 1, 6), ifd_entry(0x8769, LONG, 1, 8),
               ifd_entry(0x8825, LONG, 1, 8)]
    return exif_payload(tiff_header_ifd(entries, next_ifd=8))


def exif_enormous(size: int) -> bytes:
    """A valid IFD0 followed by ``size`` bytes of an UNDEFINED MakerNote."""
    blob = bytes(range(256)) * (size // 256 + 1)
    blob = blob[:size]
    entries = [ifd_entry(0x0112, SHORT, 1, 3), ifd_entry(0x927C, UNDEFINED, len(blob), 0)]
    ifd_size = 2 + 12 * len(entries) + 4
    offset = 8 + ifd_size
    entries[1] = ifd_entry(0x927C, UNDEFINED, len(blob), offset)
    return exif_payload(tiff_header_ifd(entries, tail=blob))


def jpeg_with_exif(out: Path, name: str, exif: bytes, index: int = 0) -> Path:
    path = out / name
    image = Image.fromarray(frame_pattern(index, SMALL), "RGB")
    image.save(path, "JPEG", quality=90, exif=exif)
    return path


def png_with_exif(out: Path, name: str, exif: bytes, index: int = 0) -> Path:
    """A PNG with an ``eXIf`` chunk holding ``exif`` (without the ``Exif\\0\\0`` prefix)."""
    path = out / name
    raw = exif[6:] if exif.startswith(b"Exif\0\0") else exif
    base = _png_bytes(index)
    iend = base.rindex(b"IEND") - 4
    path.write_bytes(base[:iend] + png_chunk(b"eXIf", raw) + base[iend:])
    return path


# --------------------------------------------------------------------------- bombs


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _png_bytes(index: int = 0, size: tuple[int, int] = SMALL) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame_pattern(index, size), "RGB").save(buf, "PNG")
    return buf.getvalue()


def png_declaring(out: Path, width: int, height: int, name: str | None = None) -> Path:
    """A 1-bit grey PNG whose IHDR declares ``width x height``; the IDAT holds 64 bytes
    (a real decode would need ``width * height / 8``)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(bytes(64))) + png_chunk(b"IEND", b""))
    path = out / (name or f"declares_{width}x{height}.png")
    path.write_bytes(data)
    return path


def png_real(out: Path, width: int, height: int, name: str | None = None) -> Path:
    """A complete, valid 1-bit grey PNG of ``width x height`` zeros (small on disk)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\0" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))
    path = out / (name or f"real_{width}x{height}.png")
    path.write_bytes(data)
    return path


def jpeg_declaring(out: Path, width: int, height: int) -> Path:
    """A small baseline JPEG whose SOF0 is patched to declare ``width x height``."""
    buf = io.BytesIO()
    Image.fromarray(frame_pattern(1, SMALL), "RGB").save(buf, "JPEG", quality=80)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    path = out / f"declares_{width}x{height}.jpg"
    path.write_bytes(bytes(data))
    return path


def gif_declaring(out: Path, width: int, height: int) -> Path:
    """A GIF whose logical screen and image descriptor declare ``width x height``."""
    buf = io.BytesIO()
    Image.fromarray(frame_pattern(1, SMALL), "RGB").convert("P").save(buf, "GIF")
    data = bytearray(buf.getvalue())
    struct.pack_into("<HH", data, 6, width, height)
    descriptor = data.index(b"\x2c", 13)
    struct.pack_into("<HH", data, descriptor + 5, width, height)
    path = out / f"declares_{width}x{height}.gif"
    path.write_bytes(bytes(data))
    return path


def tiff_declaring(out: Path, width: int, height: int) -> Path:
    """An uncompressed 8-bit grey TIFF declaring ``width x height`` with one strip of
    16 bytes."""
    entries = [
        ifd_entry(256, LONG, 1, width), ifd_entry(257, LONG, 1, height),
        ifd_entry(258, SHORT, 1, 8), ifd_entry(259, SHORT, 1, 1),
        ifd_entry(262, SHORT, 1, 1), ifd_entry(273, LONG, 1, 0),
        ifd_entry(277, SHORT, 1, 1), ifd_entry(278, LONG, 1, height),
        ifd_entry(279, LONG, 1, 16),
    ]
    strip_offset = 8 + 2 + 12 * len(entries) + 4
    entries[5] = ifd_entry(273, LONG, 1, strip_offset)
    path = out / f"declares_{width}x{height}.tiff"
    path.write_bytes(tiff_header_ifd(entries, tail=bytes(16)))
    return path


def tiff_recursive(out: Path) -> Path:
    """A valid 4x4 grey TIFF whose next-IFD link points back at its own IFD."""
    entries = [
        ifd_entry(256, LONG, 1, 4), ifd_entry(257, LONG, 1, 4),
        ifd_entry(258, SHORT, 1, 8), ifd_entry(259, SHORT, 1, 1),
        ifd_entry(262, SHORT, 1, 1), ifd_entry(273, LONG, 1, 0),
        ifd_entry(277, SHORT, 1, 1), ifd_entry(278, LONG, 1, 4),
        ifd_entry(279, LONG, 1, 16),
    ]
    strip_offset = 8 + 2 + 12 * len(entries) + 4
    entries[5] = ifd_entry(273, LONG, 1, strip_offset)
    path = out / "recursive.tiff"
    path.write_bytes(tiff_header_ifd(entries, next_ifd=8, tail=bytes(range(16))))
    return path


def bmp_declaring(out: Path, width: int, height: int) -> Path:
    """A 24-bit BMP header declaring ``width x height`` followed by a few bytes."""
    header = struct.pack("<2sIHHI", b"BM", 54 + 16, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    path = out / f"declares_{width}x{height}.bmp"
    path.write_bytes(header + info + bytes(16))
    return path


def zip_nested_bomb(out: Path) -> Path:
    """A zip holding a valid image and a zip bomb (archives are not opened recursively)."""
    inner = mediagen.zip_bomb(out / "inner")
    return mediagen.write_zip(out / "nested.zip", [("ok.png", _png_bytes(1)),
                                                   ("inner.zip", inner.read_bytes())])


def zip_stored_random(out: Path, megabytes: int) -> Path:
    """A zip of incompressible bytes stored uncompressed: a big archive that is no bomb."""
    import random

    rnd = random.Random(5)
    data = rnd.randbytes(megabytes << 20)
    path = out / f"stored_{megabytes}mb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("ok.png", _png_bytes(1))
        zf.writestr("noise.bin", data)
    return path


def zip_backslash_slip(out: Path) -> Path:
    """Windows separators: ``..\\..\\evil.txt`` and a drive letter."""
    return mediagen.write_zip(out / "backslash.zip", [
        ("ok.png", _png_bytes(1)), ("..\\..\\evil.txt", b"pwned"), ("C:\\evil.png", b"pwned"),
    ])


def zip_tiny_images(out: Path, count: int) -> Path:
    """``count`` distinct 8x8 PNG frames in one zip."""
    small = (8, 8)
    entries = []
    for i in range(count):
        buf = io.BytesIO()
        Image.new("L", small, i % 256).save(buf, "PNG")
        entries.append((f"f{i:05d}.png", buf.getvalue()))
    return mediagen.write_zip(out / f"tiny_{count}.zip", entries)


# --------------------------------------------------------------------------- lies


def renamed(src: Path, out: Path, name: str) -> Path:
    path = out / name
    path.write_bytes(src.read_bytes())
    return path


def h264(out: Path, name: str = "clip.mp4", frames: int = 24, gop: int = 6,
         faststart: bool = True) -> Path:
    """Pattern frames 0..frames-1, fixed GOP, no B-frames: each GOP is a clean block."""
    options = {"preset": "veryfast",
               "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"}
    return write_video(out / name, codec="libx264", frames=frames, size=SMALL,
                       options=options,
                       container_options={"movflags": "+faststart"} if faststart else None)


def mp4_sample_ranges(path: Path) -> list[tuple[int, int]]:
    """``(offset, size)`` of every video sample of an MP4, in decode order (PyAV demux)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(packet.pos, packet.size) for packet in container.demux(stream)
                if packet.size and packet.pos is not None and packet.pos >= 0]


def zero_samples(path: Path, first: int, out: Path | None = None) -> Path:
    """Overwrite every video sample from decode index ``first`` on with zero bytes: the
    sample table still lists them, the decoder gets nothing it can use."""
    ranges = mp4_sample_ranges(path)
    data = bytearray(path.read_bytes())
    for offset, size in ranges[first:]:
        data[offset:offset + size] = bytes(size)
    target = out or path
    target.write_bytes(bytes(data))
    return target


def garble_samples(path: Path, first: int, out: Path | None = None) -> Path:
    """Invert the bytes of every video sample from decode index ``first`` on."""
    ranges = mp4_sample_ranges(path)
    data = bytearray(path.read_bytes())
    for offset, size in ranges[first:]:
        data[offset:offset + size] = bytes(b ^ 0xFF for b in data[offset:offset + size])
    target = out or path
    target.write_bytes(bytes(data))
    return target
