"""Facts about one media file, read as cheaply as they can be trusted.

Images are probed from their headers (Pillow opens lazily), plus a structural walk
that catches truncated JPEG/PNG files without decoding any pixels.

Videos are *indexed*, not decoded: one pass over the demuxed packets of the video
stream yields the frame count, every frame's presentation timestamp and the keyframes
a reader may seek to.  A full decode happens only where the packets alone cannot be
trusted (see :func:`index_video`).  The index is what lets a chunk of 36 frames in
the middle of a two-hour video cost one GOP of decoding instead of the whole file.
"""

from __future__ import annotations

import bisect
import io
import math
import mmap
import re
import warnings
import zlib
from array import array
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np
from PIL import Image, UnidentifiedImageError

from framesvc.media.errors import MediaError
from framesvc.media.limits import MediaLimits

try:  # HEIF/HEIC photos from phones; the opener only registers a Pillow plugin.
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    pass

__all__ = [
    "ImageInfo",
    "VideoChapter",
    "VideoIndex",
    "VideoInfo",
    "index_video",
    "probe_image",
]

EXIF_ORIENTATION = 0x0112

#: Formats Pillow identifies but cannot turn into pixels (stubs, external tools,
#: or a video header), so they are not images for ingest.
NOT_IMAGE_FORMATS = frozenset({"BUFR", "GRIB", "HDF5", "MPEG", "EPS", "WMF", "IPTC"})


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageInfo:
    #: Display size: AFTER the EXIF orientation (orientations 5..8 swap the axes).
    width: int
    height: int
    #: EXIF orientation 1..8 (1 when absent or invalid).
    orientation: int
    #: Pillow's format name ("JPEG", "PNG", ...).
    format: str
    #: Pillow's mode ("RGB", "L", "I;16", "P", "RGBA", "CMYK", ...).
    mode: str


def probe_image(path: Path, limits: MediaLimits) -> ImageInfo:
    """Read an image's size, orientation, format and mode from its header.

    Refuses (``MediaError``): files Pillow cannot identify, declared pixel counts over
    ``limits.max_image_pixels`` (checked before any pixel is decoded), and JPEG/PNG
    files that are structurally incomplete (JPEG without an EOI after its last scan,
    PNG without IEND or with a chunk CRC mismatch).  Damage inside compressed pixel
    data of other formats is only found when the image is decoded.

    The error names ``path.name`` only: absolute server paths are not for clients.
    """
    name = path.name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                fmt = img.format or ""
                mode = img.mode
                exif_bytes = img.info.get("exif") if fmt == "PNG" else None
                orientation = 1 if fmt == "PNG" else _orientation_of(img)
    except Image.DecompressionBombError as exc:
        # Pillow refuses above 2 * Image.MAX_IMAGE_PIXELS before telling the size; an
        # image it will not open cannot be served either, whatever our own limit says.
        raise MediaError(name, f"image is too large to decode ({exc})") from None
    except UnidentifiedImageError:
        raise MediaError(name, "not a recognised image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(name, f"cannot read image header: {exc}") from None

    if fmt in NOT_IMAGE_FORMATS:
        raise MediaError(name, f"{fmt} files are not supported as images")
    if width <= 0 or height <= 0:
        raise MediaError(name, f"image has an invalid size {width}x{height}")
    if width * height > limits.max_image_pixels:
        raise MediaError(
            name,
            f"image is {width}x{height} = {width * height} pixels, "
            f"over the limit of {limits.max_image_pixels}",
        )

    if fmt in ("JPEG", "MPO"):  # MPO: camera JPEGs with extra images after the first
        _check_jpeg_complete(path)
    elif fmt == "PNG":
        late_exif = _check_png_chunks(path)
        exif_bytes = exif_bytes or late_exif
        if exif_bytes:
            orientation = _orientation_from_exif_bytes(exif_bytes)
    elif fmt == "WEBP":
        _check_riff_size(path)

    if orientation > 4:
        width, height = height, width
    return ImageInfo(width=width, height=height, orientation=orientation, format=fmt, mode=mode)


def _valid_orientation(value: Any) -> int:
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _orientation_of(img: Image.Image) -> int:
    try:
        return _valid_orientation(img.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # broken EXIF must not make an otherwise fine image unusable
        return 1


def _orientation_from_exif_bytes(data: bytes) -> int:
    try:
        exif = Image.Exif()
        exif.load(data if data.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + data)
        return _valid_orientation(exif.get(EXIF_ORIENTATION, 1))
    except Exception:
        return 1


def _map(path: Path) -> mmap.mmap | None:
    """The file as read-only memory (``None`` when empty: mmap refuses length 0)."""
    with open(path, "rb") as fh:
        size = fh.seek(0, io.SEEK_END)
        if size == 0:
            return None
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


#: A JPEG marker inside entropy-coded data: 0xFF followed by anything but a stuffed
#: zero or a restart marker (0xD0..0xD7).  0xFF 0xFF is fill, handled by the caller.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
#: Markers without a length field.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def _check_jpeg_complete(path: Path) -> None:
    """Walk the JPEG marker structure up to the EOI that ends the main image.

    Searching the file for the bytes FF D9 is not enough: an EXIF thumbnail has its
    own EOI early in the file, and phones append data (motion-photo MP4s) after the
    real EOI.  Walking segments by their lengths, then jumping over entropy-coded data
    with a C-level regex search, costs a few milliseconds even for large photos.
    """
    mm = _map(path)
    if mm is None:
        raise MediaError(path.name, "empty file")
    with mm:
        size = len(mm)
        if mm[:2] != b"\xff\xd8":
            raise MediaError(path.name, "not a JPEG file (no SOI marker)")
        pos = 2
        in_scan = False
        while True:
            if in_scan:
                match = _JPEG_MARKER.search(mm, pos)
                if match is None:
                    break
                pos = match.start()
            if pos + 2 > size:
                break
            if mm[pos] != 0xFF:
                raise MediaError(path.name, f"corrupt JPEG: no marker at byte {pos}")
            marker = mm[pos + 1]
            if marker == 0xFF:  # fill byte before a marker
                pos += 1
                continue
            if marker == 0xD9:  # EOI: the image is complete
                return
            if marker in _JPEG_STANDALONE:
                pos += 2
                continue
            if pos + 4 > size:
                break
            length = int.from_bytes(mm[pos + 2 : pos + 4], "big")
            if length < 2:
                raise MediaError(path.name, f"corrupt JPEG: bad segment length at byte {pos}")
            pos += 2 + length
            if pos > size:
                break
            in_scan = marker == 0xDA  # SOS: entropy-coded data follows the header
    raise MediaError(path.name, "truncated JPEG: the file ends before its EOI marker")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png_chunks(path: Path) -> bytes | None:
    """Walk every PNG chunk, checking its CRC, up to IEND; return an eXIf payload.

    The CRCs turn a flipped bit anywhere in the file into an error at ingest instead
    of a broken chunk later; crc32 runs at memory speed.  Pillow finds an eXIf chunk
    that follows the image data only by decoding the image, so it is collected here.
    """
    mm = _map(path)
    if mm is None:
        raise MediaError(path.name, "empty file")
    exif: bytes | None = None
    with mm:
        size = len(mm)
        if mm[:8] != _PNG_SIGNATURE:
            raise MediaError(path.name, "not a PNG file (bad signature)")
        pos = 8
        view = memoryview(mm)
        try:
            while pos + 12 <= size:
                length = int.from_bytes(view[pos : pos + 4], "big")
                ctype = bytes(view[pos + 4 : pos + 8])
                end = pos + 12 + length
                if length > 0x7FFFFFFF or end > size:
                    break
                crc = int.from_bytes(view[end - 4 : end], "big")
                if zlib.crc32(view[pos + 4 : end - 4]) != crc:
                    raise MediaError(
                        path.name, f"corrupt PNG: CRC mismatch in {ctype!r} chunk at byte {pos}"
                    )
                if ctype == b"eXIf":
                    exif = bytes(view[pos + 8 : end - 4])
                if ctype == b"IEND":
                    return exif
                pos = end
        finally:
            view.release()
    raise MediaError(path.name, "truncated PNG: the file ends before its IEND chunk")


def _check_riff_size(path: Path) -> None:
    """A WebP (RIFF) file declares its size in the header; shorter means truncated."""
    with open(path, "rb") as fh:
        header = fh.read(12)
        actual = fh.seek(0, io.SEEK_END)
    if len(header) < 12 or header[:4] != b"RIFF":
        raise MediaError(path.name, "corrupt WebP: no RIFF header")
    declared = int.from_bytes(header[4:8], "little") + 8
    if declared > actual:
        raise MediaError(path.name, f"truncated WebP: {actual} of {declared} bytes present")


# --------------------------------------------------------------------------- videos

_NO_PTS = np.iinfo(np.int64).min


@dataclass(frozen=True, eq=False)
class VideoIndex:
    """Where every frame of one video stream is, by presentation timestamp.

    * ``frame_pts[n]`` is the pts the decoder reports for output frame ``n`` (frames
      in presentation order).  Normally strictly increasing; after a decode-verified
      index of a file with broken timestamps (e.g. AVI with B-frames, whose pts are
      decode-order counters) it is what the decoder reports, in output order, and
      frames reported without a pts hold unique placeholders below every real pts.
    * ``keyframes`` are frame numbers a reader may seek to: ``container.seek(pts,
      stream=s)`` (backward, keyframes only) followed by decoding yields frame ``k``
      (pts ``frame_pts[k]``), then the following frames in order, each exactly as a
      sequential decode gives it.  Pictures with a lower pts that a decoder may emit
      first (leading pictures of an open GOP, rules A' and A'' of index_video; FFmpeg
      drops them) are not frames of that seek and must be skipped.  ``0`` is
      always present and always reachable by decoding a fresh container from the
      start of the file; in a decode-verified index it may not be reachable by a
      seek (MPEG-TS seeks by timestamp search, not to keyframes).
    * ``synthetic_pts``: the stream carries no timestamps at all (raw elementary
      streams); ``frame_pts`` are then output indices ``0..n-1`` and ``keyframes`` is
      ``[0]``: readers decode from the start and count frames.
    """

    frame_pts: np.ndarray
    keyframes: np.ndarray
    synthetic_pts: bool = False
    _order: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame_pts", np.ascontiguousarray(self.frame_pts, np.int64))
        object.__setattr__(self, "keyframes", np.ascontiguousarray(self.keyframes, np.int32))
        object.__setattr__(self, "_order", np.argsort(self.frame_pts, kind="stable"))

    @property
    def frame_count(self) -> int:
        return int(self.frame_pts.shape[0])

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            frame_pts=self.frame_pts,
            keyframes=self.keyframes,
            synthetic_pts=np.array([self.synthetic_pts]),
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> VideoIndex:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            synthetic = bool(data["synthetic_pts"][0]) if "synthetic_pts" in data else False
            return cls(
                frame_pts=data["frame_pts"], keyframes=data["keyframes"], synthetic_pts=synthetic
            )

    def keyframe_at_or_before(self, frame: int) -> tuple[int, int]:
        """The closest seekable keyframe at or before ``frame``: ``(frame number, pts)``."""
        if not 0 <= frame < self.frame_count:
            raise IndexError(f"frame {frame} outside 0..{self.frame_count - 1}")
        i = bisect.bisect_right(self.keyframes, frame) - 1
        kf = int(self.keyframes[max(i, 0)])
        return kf, int(self.frame_pts[kf])

    def frame_of_pts(self, pts: int) -> int | None:
        """The frame number whose pts is ``pts`` (the first one if repeated), else None."""
        sorted_pts = self._sorted_pts
        i = int(np.searchsorted(sorted_pts, pts, side="left"))
        if i < sorted_pts.shape[0] and sorted_pts[i] == pts:
            return int(self._order[i])
        return None

    @cached_property
    def _sorted_pts(self) -> np.ndarray:
        return self.frame_pts[self._order]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VideoIndex):
            return NotImplemented
        return (
            self.synthetic_pts == other.synthetic_pts
            and np.array_equal(self.frame_pts, other.frame_pts)
            and np.array_equal(self.keyframes, other.keyframes)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class VideoChapter:
    """A container chapter (MP4/MOV chapter track or Nero list, Matroska chapters) in
    frames of the indexed stream, as CVAT's manifest keeps them (spec §6.1, §8)."""

    #: The frame shown nearest to the chapter's start time.
    start: int
    #: The last frame of the chapter (inclusive): the one before the frame nearest to
    #: its end time, or the last frame when it ends after the last frame starts.
    stop: int
    #: The ``title`` metadata entry, None when the container gives none.
    title: str | None


@dataclass(frozen=True)
class VideoInfo:
    frame_count: int
    #: Display size: after the rotation of the display matrix.
    width: int
    height: int
    fps: float
    #: Counter-clockwise degrees (0/90/180/270) the decoded picture must be turned for
    #: display, from the display matrix (PyAV's ``VideoFrame.rotation``, normalised).
    #: ``np.rot90(array, rotation // 90)`` gives the displayed picture.
    rotation: int
    #: Codec name (FFmpeg descriptor name: "h264", "hevc", "vp9", "av1", "mjpeg", ...).
    codec: str
    #: Pixel format of the decoded frames ("yuv420p", "yuv420p10le", "yuvj420p", ...).
    pix_fmt: str
    stream_index: int
    time_base: Fraction
    index: VideoIndex
    #: "demux" (packets alone) or "decode-verified" (a full decode was needed).
    index_method: str
    #: The container's chapters in container order (none for most videos).
    chapters: tuple[VideoChapter, ...] = ()


#: FFmpeg demuxers that read still images or text files, not video.
NOT_VIDEO_DEMUXERS = frozenset(
    {"image2", "gif", "apng", "webp", "tty", "bin", "xbin", "adf", "idf", "avif", "heif"}
)
#: Video "codecs" that render text files (FFmpeg's tty demuxer opens any .txt).
NOT_VIDEO_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})

#: Containers whose packets carry real presentation timestamps and one frame each
#: for the codecs below (ISO BMFF / QuickTime, Matroska / WebM).
_TRUSTED_FORMATS = frozenset({"mov", "mp4", "matroska", "webm"})
#: Codecs whose packets in those containers are exactly one displayed frame each.
#: VP8 (invisible alt-ref frames), MPEG-4 part 2 (packed B-frames) and MPEG-2 (field
#: pictures) can break that rule and are decode-verified.
_TRUSTED_CODECS = frozenset({"h264", "hevc", "vp9", "av1"})
#: Packets examined when checking that a seek lands on a keyframe (decode-verified
#: mode only), as CVAT's manifest does (``SEEK_MISMATCH_UPPER_BOUND``).
_SEEK_CHECK_PACKETS = 200
#: Decode-verified keyframes closer than this to the previous one are not checked
#: or recorded: readers lose little, and all-intra streams do not cost a seek each.
_MIN_VERIFIED_KEYFRAME_GAP = 16


def index_video(path: Path, limits: MediaLimits) -> VideoInfo:
    """Index the first (default) video stream of ``path`` by demuxing its packets.

    **Demux index** (``index_method="demux"``).  One pass over the stream's packets
    (empty flush packets skipped) records pts, dts and the keyframe flag.  Frame count
    = packets; ``frame_pts`` = packet pts sorted (B-frames: presentation order is pts
    order; variable frame rate needs nothing special because frame numbers come from
    ranks, never from time × fps; negative pts are just numbers).  Only the first frame
    is decoded: PyAV 18 exposes the display matrix only on decoded frames
    (``VideoFrame.rotation``), and it proves the stream is decodable at all.

    A keyframe packet K (pts ``p``) is recorded as seekable only if:

    A. no packet after K in decode order has a pts below ``p``.  Open-GOP keyframes
       (x264 ``open-gop``, HEVC CRA) are followed by leading pictures that are shown
       before K but reference the previous GOP; after a seek to K those are missing or
       broken, so K is not a clean entry point and is skipped (the previous keyframe
       serves instead).  A closed-GOP keyframe is decoded first and output first.
    A'. HEVC in MP4/Matroska only: a CRA/BLA keyframe whose leading pictures are all
       RASL is accepted too (NAL unit types read from the first bytes of the keyframe
       and leading packets only): the standard forbids later pictures to reference
       anything before it and decoders drop RASL pictures when they start there, so
       x265's default open GOPs stay seekable.
    A''. H.264 in MP4/Matroska only: an open-GOP keyframe whose access unit carries a
       recovery point SEI with ``recovery_frame_cnt = 0`` and ``exact_match_flag = 1``
       (x264 ``open-gop`` writes one) is accepted too, if no packet before it is shown
       after it and its leading pictures all precede the next keyframe.  The SEI
       promises exact output for the keyframe and every picture after it in output
       order; the leading pictures are not covered, but they have lower frame numbers,
       so readers take them from the previous keyframe and never from a decode that
       started at this one (``VideoReader`` skips frames below its seek point).  Only
       the SEI NAL units before the first slice of keyframe packets are read.  Without
       the SEI (or with an inexact one) rule A stands: slower, never wrong.
    B. the next keyframe-flagged packet has both pts and dts above ``p``.  Demuxers
       pick the seek target by pts (Matroska cues) or by dts (MP4 sample table); with
       this margin a backward seek to ``p`` cannot land on a later keyframe under
       either rule, and it lands on K itself because K's own timestamps are ``<= p``.

    Both checks are O(n) on the packet arrays.  This is sound for the codecs and
    containers where a packet is exactly one displayed frame with a real pts:
    H.264/HEVC/VP9/AV1 in MP4/MOV/Matroska/WebM, and any intra-only codec (MJPEG,
    ProRes, ...) in any container (for those, a missing pts falls back to the dts).

    **Decode-verified index** (``index_method="decode-verified"``), used exactly when
    demuxing alone cannot be trusted:

    * the codec/container pair is not one of the above (AVI with B-frames stores
      decode-order counters as pts; MPEG-TS and raw streams have no sample index and
      may split fields; VP8, MPEG-4 part 2, MPEG-2, ...);
    * a packet has no pts (and the codec is not intra-only), or two packets share a pts;
    * the first packet is not a keyframe, or a packet has a lower pts than the first
      one (the decoder drops what it cannot decode at the start);
    * a packet is flagged discard (edit lists) or corrupt.

    Then the whole stream is decoded once (``thread_type="AUTO"``); frames are what the
    decoder outputs, with their pts.  Keyframes passing A and B are additionally
    verified as CVAT's manifest does: a second container seeks to the keyframe's pts
    and the first frame it decodes must carry that pts (at most one check every
    ``_MIN_VERIFIED_KEYFRAME_GAP`` frames).  Without usable timestamps (none at all,
    repeated or decreasing in output order) only keyframe 0 is recorded.

    Raises ``MediaError`` for files that are not video, have no video stream, exceed
    ``limits.max_video_frames``, are truncated (an MP4 whose sample table lists more
    samples than the file holds) or cannot be decoded.
    """
    name = path.name
    container = _open_video(path)
    with container:
        chapters = _read_chapters(container)
        if is_still_image_container(container):
            raise MediaError(name, f"an image ({container.format.name}), not a video")
        stream = pick_video_stream(container)
        if stream is None:
            raise MediaError(name, "no video stream")
        declared = int(stream.frames or 0)
        if declared > limits.max_video_frames:
            raise MediaError(
                name, f"video has {declared} frames, over the limit of {limits.max_video_frames}"
            )
        codec = _codec_name(stream)
        intra_only = _is_intra_only(stream)
        formats = set(container.format.name.split(","))
        demux_possible = intra_only or (
            bool(formats & _TRUSTED_FORMATS) and codec in _TRUSTED_CODECS
        )
        common = {
            "codec": codec,
            "stream_index": stream.index,
            "time_base": stream.time_base or Fraction(1, 1),
            "chapters": chapters,
        }
        if demux_possible:
            scan = _scan_packets(container, stream, name, limits, decode_all=False)
            if declared and scan.count < declared and formats & {"mov", "mp4"}:
                raise MediaError(
                    name,
                    f"truncated video: {scan.count} of {declared} frames are present in the file",
                )
            index = _demux_index(scan, intra_only)
            if index is not None:
                return _video_info(stream, scan, index, "demux", **common)
    # Demuxing could not be trusted: decode everything once, with a fresh container.
    container = _open_video(path)
    with container:
        stream = container.streams[common["stream_index"]]
        stream.thread_type = "AUTO"
        scan = _scan_packets(container, stream, name, limits, decode_all=True)
        index = _decoded_index(path, stream.index, scan)
        return _video_info(stream, scan, index, "decode-verified", **common)


def _open_video(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise MediaError(path.name, f"not a readable video file ({exc.strerror})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MediaError(path.name, f"not a readable video file ({exc})") from None


def is_still_image_container(container: av.container.InputContainer) -> bool:
    """FFmpeg opens JPEG, PNG, GIF... (and text files) as one-stream "videos"."""
    names = set(container.format.name.split(","))
    return bool(names & NOT_VIDEO_DEMUXERS) or container.format.name.endswith("_pipe")


def pick_video_stream(container: av.container.InputContainer) -> Any:
    """The default video stream, else the first; cover art (attached pictures) and
    text renderings are not video."""
    candidates = [
        s
        for s in container.streams.video
        if not (s.disposition & av.stream.Disposition.attached_pic)
        and s.codec_context.name not in NOT_VIDEO_CODECS
    ]
    for s in candidates:
        if s.disposition & av.stream.Disposition.default:
            return s
    return candidates[0] if candidates else None


def _codec_name(stream: Any) -> str:
    codec = stream.codec_context.codec
    return str(getattr(codec, "canonical_name", None) or codec.name)


def _is_intra_only(stream: Any) -> bool:
    try:
        return bool(stream.codec_context.codec.intra_only)
    except Exception:
        return False


@dataclass
class _Scan:
    """Packets of the stream in decode order, plus decoded frames when asked for."""

    pts: array = field(default_factory=lambda: array("q"))
    dts: array = field(default_factory=lambda: array("q"))
    key: bytearray = field(default_factory=bytearray)
    #: HEVC only: the first VCL NAL unit type of keyframe packets and of packets shown
    #: before the latest keyframe (its leading pictures); _NAL_UNKNOWN elsewhere.
    vcl: bytearray | None = None
    #: H.264 only: 1 for keyframe packets whose access unit carries a recovery point SEI
    #: promising exact output from the keyframe on (see _h264_exact_recovery), else 0.
    recovery: bytearray | None = None
    suspicious: int = 0  # packets flagged discard or corrupt
    count: int = 0
    first_frame: Any = None  # the first decoded frame (rotation, size, pix_fmt)
    frame_pts: array = field(default_factory=lambda: array("q"))
    frames_without_pts: int = 0
    decode_errors: int = 0


def _scan_packets(
    container: Any, stream: Any, name: str, limits: MediaLimits, decode_all: bool
) -> _Scan:
    scan = _Scan()
    max_frames = limits.max_video_frames
    max_packets = max_frames if not decode_all else 2 * max_frames  # fields, hidden frames
    pts_a, dts_a, key_a = scan.pts, scan.dts, scan.key
    nal_length = _hevc_nal_length_size(stream) if not decode_all else None
    if nal_length is not None:
        scan.vcl = bytearray()
    vcl_a = scan.vcl
    avc_length = _h264_nal_length_size(stream) if not decode_all else None
    if avc_length is not None:
        scan.recovery = bytearray()
    recovery_a = scan.recovery
    last_key_pts: int | None = None
    if not decode_all:
        # One frame is wanted, soon: frame threading would delay the first output.
        stream.thread_type = "SLICE"
    decoding = True
    last_error: str | None = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            pts, dts = packet.pts, packet.dts
            pts_a.append(_NO_PTS if pts is None else pts)
            dts_a.append(_NO_PTS if dts is None else dts)
            is_key = packet.is_keyframe
            key_a.append(1 if is_key else 0)
            if vcl_a is not None:
                leading = pts is not None and last_key_pts is not None and pts < last_key_pts
                vcl_a.append(
                    _first_vcl_type(packet, nal_length) if is_key or leading else _NAL_UNKNOWN
                )
                if is_key and pts is not None:
                    last_key_pts = pts
            if recovery_a is not None:
                recovery_a.append(1 if is_key and _h264_exact_recovery(packet, avc_length) else 0)
            if packet.is_discard or packet.is_corrupt:
                scan.suspicious += 1
            scan.count += 1
            if scan.count > max_packets:
                raise MediaError(name, f"video has over {max_frames} frames, the limit")
            if decoding:
                try:
                    frames = stream.decode(packet)
                except av.error.FFmpegError as exc:
                    scan.decode_errors += 1
                    last_error = exc.strerror
                    continue
                _take_frames(scan, frames, name, max_frames)
                decoding = decode_all or scan.first_frame is None
        if decoding:
            try:
                _take_frames(scan, stream.decode(None), name, max_frames)
            except av.error.FFmpegError as exc:
                scan.decode_errors += 1
                last_error = exc.strerror
    except av.error.FFmpegError as exc:
        raise MediaError(name, f"truncated or corrupt video ({exc.strerror})") from None
    if scan.count == 0:
        raise MediaError(name, "the video stream has no frames")
    if scan.first_frame is None:
        detail = f" ({last_error})" if last_error else ""
        raise MediaError(name, f"no frame of the video can be decoded{detail}")
    return scan


def _take_frames(scan: _Scan, frames: list[Any], name: str, max_frames: int) -> None:
    for frame in frames:
        if scan.first_frame is None:
            scan.first_frame = frame
        if frame.pts is None:
            scan.frames_without_pts += 1
            scan.frame_pts.append(_NO_PTS)
        else:
            scan.frame_pts.append(frame.pts)
        if len(scan.frame_pts) > max_frames:
            raise MediaError(name, f"video has over {max_frames} frames, the limit")


def _demux_index(scan: _Scan, intra_only: bool) -> VideoIndex | None:
    """The index from packets alone, or None when they cannot be trusted."""
    pts = np.frombuffer(scan.pts, dtype=np.int64).copy()
    dts = np.frombuffer(scan.dts, dtype=np.int64)
    key = np.frombuffer(scan.key, dtype=np.uint8).astype(bool)
    missing = pts == _NO_PTS
    if missing.any():
        if not intra_only or (dts[missing] == _NO_PTS).any():
            return None
        pts[missing] = dts[missing]  # intra-only: decode order is presentation order
    if scan.suspicious:
        return None
    if not key[0] or pts[0] != pts.min():
        return None
    order = np.argsort(pts, kind="stable")
    frame_pts = pts[order]
    if (np.diff(frame_pts) <= 0).any():  # repeated pts: frames are not identifiable
        return None
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    vcl = np.frombuffer(scan.vcl, dtype=np.uint8) if scan.vcl is not None else None
    recovery = (
        np.frombuffer(scan.recovery, dtype=np.uint8).astype(bool)
        if scan.recovery is not None
        else None
    )
    accepted = _seekable_positions(pts, dts, key, vcl, recovery)
    keyframes = np.union1d([0], rank[accepted]).astype(np.int32)
    return VideoIndex(frame_pts=frame_pts, keyframes=keyframes)


def _seekable_positions(
    pts: np.ndarray,
    dts: np.ndarray,
    key: np.ndarray,
    vcl: np.ndarray | None = None,
    recovery: np.ndarray | None = None,
) -> np.ndarray:
    """Decode positions of keyframe packets that satisfy rules A and B (see index_video).

    Packets without a pts count as +inf for rule A (they display nothing earlier) and
    are never keyframe candidates.  With ``vcl`` (HEVC NAL types), rule A also accepts
    a CRA/BLA keyframe whose leading pictures are all RASL (rule A'); with ``recovery``
    (H.264 exact recovery points), an open-GOP keyframe whose output is exact from the
    keyframe on (rule A'').
    """
    n = pts.shape[0]
    big = np.iinfo(np.int64).max
    pts_or_inf = np.where(pts == _NO_PTS, big, pts)
    # suffix_min[i] = min pts of packets i..n-1; the sentinel is for "nothing after".
    suffix_min = np.append(np.minimum.accumulate(pts_or_inf[::-1])[::-1], big)
    candidates = np.flatnonzero(key & (pts != _NO_PTS))
    if candidates.shape[0] == 0:
        return candidates
    cand_pts = pts[candidates]
    rule_a = cand_pts < suffix_min[candidates + 1]
    # The next keyframe-flagged packet (whether or not it is accepted); n if none.
    next_key = np.append(candidates[1:], n)
    if vcl is not None:
        rule_a |= _rasl_only_irap(pts_or_inf, key, vcl, candidates, next_key, suffix_min)
    if recovery is not None:
        rule_a |= _exact_recovery_point(pts, recovery, candidates, next_key, suffix_min)
    # Rule B.
    has_next = next_key < n
    nk = next_key[has_next]
    nk_pts = pts_or_inf[nk]
    nk_dts = np.where(dts[nk] == _NO_PTS, big, dts[nk])
    rule_b = np.ones(candidates.shape[0], dtype=bool)
    rule_b[has_next] = np.minimum(nk_pts, nk_dts) > cand_pts[has_next]
    return candidates[rule_a & rule_b]


def _rasl_only_irap(
    pts: np.ndarray,
    key: np.ndarray,
    vcl: np.ndarray,
    candidates: np.ndarray,
    next_key: np.ndarray,
    suffix_min: np.ndarray,
) -> np.ndarray:
    """Rule A' (HEVC): a CRA/BLA keyframe whose leading pictures are all RASL.

    HEVC guarantees that pictures following an IRAP picture in both decoding and
    output order never reference anything before it, and a decoder that starts at a
    CRA/BLA discards its RASL pictures (FFmpeg does, after every seek).  So a seek to
    such a keyframe yields the keyframe first and every later frame correctly: the
    open GOPs that x265 writes by default stay seekable.  RADL leading pictures are
    decodable and would be output first, so any non-RASL leading picture fails, as
    does a later segment showing anything before the keyframe.
    """
    n = pts.shape[0]
    positions = np.arange(n)
    segment = np.maximum.accumulate(np.where(key, positions, -1))  # latest key at/before
    in_segment = segment >= 0
    seg_pts = np.where(in_segment, pts[np.maximum(segment, 0)], np.iinfo(np.int64).min)
    leading = in_segment & ~key & (pts < seg_pts)
    bad = leading & ~np.isin(vcl, _HEVC_RASL)
    bad_per_key = np.bincount(segment[bad], minlength=n) if bad.any() else np.zeros(n, int)
    return (
        np.isin(vcl[candidates], _HEVC_CRA_BLA_WITH_RASL)
        & (bad_per_key[candidates] == 0)
        & (suffix_min[next_key] > pts[candidates])
    )


def _exact_recovery_point(
    pts: np.ndarray,
    recovery: np.ndarray,
    candidates: np.ndarray,
    next_key: np.ndarray,
    suffix_min: np.ndarray,
) -> np.ndarray:
    """Rule A'' (H.264): an open-GOP keyframe with an exact recovery point at itself.

    A recovery point SEI with ``recovery_frame_cnt = 0`` and ``exact_match_flag = 1``
    (x264 ``open-gop`` writes one on every non-IDR keyframe) promises that a decoder
    starting at this access unit outputs the keyframe and every picture after it *in
    output order* exactly as a decoder that started earlier.  The leading pictures
    (later in decode order, earlier in output order) are not covered: FFmpeg drops
    them after a seek (or outputs them damaged), and the reader never takes a frame
    below its seek point from such a decode anyway (``VideoReader``: frames under the
    floor are skipped; a wanted leading frame has a number below the keyframe's, so it
    is read from the previous keyframe).  So the keyframe is a seek point for itself
    and the frames after it, provided that every frame shown after it is decoded after
    it (no earlier packet has a later pts) and that its leading pictures all come
    before the next keyframe.
    """
    prefix_max = np.maximum.accumulate(pts)
    before = np.where(candidates > 0, prefix_max[np.maximum(candidates - 1, 0)], _NO_PTS)
    cand_pts = pts[candidates]
    return recovery[candidates] & (before < cand_pts) & (suffix_min[next_key] > cand_pts)


_NAL_UNKNOWN = 255
#: HEVC NAL unit types: RASL_N, RASL_R; CRA, BLA_W_LP (the IRAPs that may have RASL).
_HEVC_RASL = (8, 9)
_HEVC_CRA_BLA_WITH_RASL = (16, 21)


def _nal_length_size(stream: Any, codec: str, record_size: int, at: int) -> int | None:
    """NAL length-prefix size from the codec's configuration record in ``extradata``
    (version 1; the size minus one is in the low two bits of byte ``at``), else None."""
    if _codec_name(stream) != codec:
        return None
    extradata = stream.codec_context.extradata
    if not extradata or len(extradata) < record_size or extradata[0] != 1:
        return None  # Annex B start codes, or no record: no refinement
    return (extradata[at] & 0x03) + 1


def _hevc_nal_length_size(stream: Any) -> int | None:
    """From an ``hvcC`` record (MP4/Matroska HEVC)."""
    return _nal_length_size(stream, "hevc", 23, 21)


def _h264_nal_length_size(stream: Any) -> int | None:
    """From an ``avcC`` record (MP4/Matroska H.264)."""
    return _nal_length_size(stream, "h264", 7, 4)


#: H.264 NAL unit types: SEI; coded slices (1..5) end the search for SEI messages.
_H264_SEI = 6
_H264_VCL = range(1, 6)
#: SEI payload type of a recovery point.
_SEI_RECOVERY_POINT = 6


def _h264_exact_recovery(packet: Any, length_size: int | None) -> bool:
    """True if the access unit has a recovery point SEI with ``recovery_frame_cnt`` 0
    and ``exact_match_flag`` 1 (H.264 D.2.8), read from its SEI NAL units before the
    first slice.  Malformed data reads as False (no seek point: only slower)."""
    if length_size is None:
        return False
    data = bytes(packet)
    pos, size = 0, len(data)
    while pos + length_size < size:
        length = int.from_bytes(data[pos : pos + length_size], "big")
        start = pos + length_size
        nal_type = data[start] & 0x1F
        if nal_type in _H264_VCL:
            return False
        sei = nal_type == _H264_SEI
        if sei and _sei_has_exact_recovery(_unescape(data[start + 1 : start + length])):
            return True
        pos = start + length
    return False


def _unescape(rbsp: bytes) -> bytes:
    """Remove emulation prevention bytes (``00 00 03`` → ``00 00``)."""
    return rbsp.replace(b"\x00\x00\x03", b"\x00\x00") if b"\x00\x00\x03" in rbsp else rbsp


def _sei_value(payload: bytes, pos: int) -> tuple[int, int] | None:
    """An SEI payload type or size (bytes of 0xFF add 255, the last byte ends it) and the
    position after it; None if the payload ends first."""
    value, size = 0, len(payload)
    while pos < size and payload[pos] == 0xFF:
        value, pos = value + 255, pos + 1
    if pos >= size:
        return None
    return value + payload[pos], pos + 1


def _sei_has_exact_recovery(payload: bytes) -> bool:
    pos, size = 0, len(payload)
    while pos < size and payload[pos] != 0x80:  # 0x80: rbsp trailing bits
        read = _sei_value(payload, pos)
        if read is None:
            return False
        kind, pos = read
        read = _sei_value(payload, pos)
        if read is None:
            return False
        length, pos = read
        if kind == _SEI_RECOVERY_POINT:
            return _recovery_is_exact_at_once(payload[pos : pos + length])
        pos += length
    return False


def _recovery_is_exact_at_once(body: bytes) -> bool:
    """``recovery_frame_cnt`` (ue(v)) == 0 is the single bit 1; ``exact_match_flag``
    is the bit after it."""
    return len(body) > 0 and body[0] & 0xC0 == 0xC0


def _first_vcl_type(packet: Any, length_size: int | None) -> int:
    """The NAL unit type of the first slice in a length-prefixed HEVC packet."""
    if length_size is None:
        return _NAL_UNKNOWN
    data = memoryview(packet)
    pos, size = 0, len(data)
    try:
        while pos + length_size < size:
            length = int.from_bytes(data[pos : pos + length_size], "big")
            nal_type = (data[pos + length_size] >> 1) & 0x3F
            if nal_type < 32:  # VCL
                return nal_type
            pos += length_size + length
    finally:
        data.release()
    return _NAL_UNKNOWN


def _decoded_index(path: Path, stream_index: int, scan: _Scan) -> VideoIndex:
    """The index from a full decode (see index_video for when and why)."""
    frame_pts = np.frombuffer(scan.frame_pts, dtype=np.int64).copy()
    n = frame_pts.shape[0]
    if scan.frames_without_pts == n:
        return VideoIndex(
            frame_pts=np.arange(n, dtype=np.int64),
            keyframes=np.array([0], np.int32),
            synthetic_pts=True,
        )
    if scan.frames_without_pts or (np.diff(frame_pts) <= 0).any():
        # Timestamps cannot identify frames after a seek: readers count from the start.
        if scan.frames_without_pts:
            frame_pts = _fill_missing_pts(frame_pts)
        return VideoIndex(frame_pts=frame_pts, keyframes=np.array([0], np.int32))
    pts = np.frombuffer(scan.pts, dtype=np.int64)
    dts = np.frombuffer(scan.dts, dtype=np.int64)
    key = np.frombuffer(scan.key, dtype=np.uint8).astype(bool)
    positions = _seekable_positions(pts, dts, key)
    frames = np.searchsorted(frame_pts, pts[positions])
    present = frames < n
    present[present] = frame_pts[frames[present]] == pts[positions][present]
    candidates = sorted({int(f) for f in frames[present] if f > 0})
    verified = [0]
    if candidates:
        verified += _verify_seeks(path, stream_index, frame_pts, candidates)
    return VideoIndex(frame_pts=frame_pts, keyframes=np.array(verified, np.int32))


def _fill_missing_pts(frame_pts: np.ndarray) -> np.ndarray:
    """Give frames the decoder reported without a pts unique placeholders below every
    real pts, so that ``frame_of_pts`` never confuses them with a real frame; such
    frames are identifiable by position only (and keyframes are then just frame 0)."""
    out = frame_pts.copy()
    missing = out == _NO_PTS
    real = out[~missing]
    floor = int(real.min()) if real.shape[0] else 0
    out[missing] = floor - 1 - np.arange(int(missing.sum()), dtype=np.int64)[::-1]
    return out


def _verify_seeks(
    path: Path, stream_index: int, frame_pts: np.ndarray, candidates: list[int]
) -> list[int]:
    """Keep candidates where a backward keyframe seek to their pts decodes them first."""
    kept: list[int] = []
    last = 0
    container = _open_video(path)
    with container:
        stream = container.streams[stream_index]
        stream.thread_type = "SLICE"
        for frame_no in candidates:
            if frame_no - last < _MIN_VERIFIED_KEYFRAME_GAP:
                continue
            target = int(frame_pts[frame_no])
            if _first_pts_after_seek(container, stream, target) == target:
                kept.append(frame_no)
                last = frame_no
    return kept


def _first_pts_after_seek(container: Any, stream: Any, target: int) -> int | None:
    try:
        container.seek(target, stream=stream, backward=True, any_frame=False)
        for seen, packet in enumerate(container.demux(stream), start=1):
            if seen > _SEEK_CHECK_PACKETS:
                return None
            for frame in stream.decode(packet if packet.size else None):
                return frame.pts
    except av.error.FFmpegError:
        return None
    return None


def _video_info(
    stream: Any,
    scan: _Scan,
    index: VideoIndex,
    method: str,
    *,
    codec: str,
    stream_index: int,
    time_base: Fraction,
    chapters: list[_RawChapter],
) -> VideoInfo:
    first = scan.first_frame
    rotation = _normalise_rotation(first.rotation)
    width, height = int(first.width), int(first.height)
    if rotation in (90, 270):
        width, height = height, width
    fps = _fps(stream, index, time_base)
    return VideoInfo(
        frame_count=index.frame_count,
        width=width,
        height=height,
        fps=fps,
        rotation=rotation,
        codec=codec,
        pix_fmt=str(first.format.name),
        stream_index=stream_index,
        time_base=time_base,
        index=index,
        index_method=method,
        chapters=_chapter_frames(chapters, index, time_base, fps),
    )


def _normalise_rotation(degrees: Any) -> int:
    try:
        value = float(degrees or 0)
    except (TypeError, ValueError):
        return 0
    return round(value / 90.0) * 90 % 360


def _fps(stream: Any, index: VideoIndex, time_base: Fraction) -> float:
    """The container's average rate; else frames over the pts span; else the guess."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return float(rate)
    n = index.frame_count
    if n > 1 and not index.synthetic_pts:
        span = int(index.frame_pts.max()) - int(index.frame_pts.min())
        if span > 0:
            return float((n - 1) / (span * time_base))
    return 0.0


# --------------------------------------------------------------------------- chapters

#: Chapters kept per video and characters kept per title: a file is not allowed to
#: turn every ``data/meta`` answer into megabytes.
MAX_CHAPTERS = 4096
MAX_CHAPTER_TITLE = 1024


@dataclass(frozen=True)
class _RawChapter:
    start: Fraction  # seconds
    end: Fraction
    title: str | None


def _read_chapters(container: Any) -> list[_RawChapter]:
    """The container's chapters, in seconds; none if FFmpeg cannot list them."""
    try:
        listed = container.chapters()
    except (av.error.FFmpegError, ValueError, TypeError, UnicodeDecodeError):
        return []
    out = []
    for chapter in listed[:MAX_CHAPTERS]:
        time_base = chapter.get("time_base")
        if not time_base:
            continue
        title = (chapter.get("metadata") or {}).get("title")
        # Text every store can hold (no NUL: PostgreSQL), bounded.
        title = title.replace("\x00", "")[:MAX_CHAPTER_TITLE] if isinstance(title, str) else None
        tb = Fraction(time_base)
        out.append(_RawChapter(chapter["start"] * tb, chapter["end"] * tb, title))
    return out


def _chapter_frames(
    chapters: list[_RawChapter], index: VideoIndex, time_base: Fraction, fps: float
) -> tuple[VideoChapter, ...]:
    """Chapter times → frame numbers of ``index`` ("nearest pts", spec §8).

    A chapter starts at the frame shown nearest to its start time (ties: the earlier
    frame) and stops before the frame nearest to its end time, so chapters that meet
    in time meet in frames without overlapping; one that ends after the last frame has
    started runs to the last frame.  Without usable timestamps (an index that counts
    frames) times become frames through the frame rate.
    """
    count = index.frame_count
    if not chapters or count == 0:
        return ()
    pts = index.frame_pts
    by_pts = not index.synthetic_pts and bool(np.all(pts[1:] > pts[:-1]))
    last = int(pts[-1])

    def position(seconds: Fraction) -> Fraction:
        """The time on the scale the index numbers frames by (pts, or frame numbers)."""
        return seconds / time_base if by_pts else seconds * Fraction(fps or 0)

    def nearest(at: Fraction) -> int:
        if not by_pts:
            return min(max(round(at), 0), count - 1)
        above = int(np.searchsorted(pts, math.floor(at), side="right"))  # first pts > at
        if above == 0:
            return 0
        if above == count:
            return count - 1
        return above - 1 if at - int(pts[above - 1]) <= int(pts[above]) - at else above

    end_of_last = last if by_pts else count - 1
    out = []
    for chapter in chapters:
        start = nearest(position(chapter.start))
        end = position(chapter.end)
        stop = count - 1 if end > end_of_last else max(start, nearest(end) - 1)
        out.append(VideoChapter(start=start, stop=stop, title=chapter.title))
    return tuple(out)
