"""What an upload is: a set of scene images (with context images), or one video.

Files are classified by their content (Pillow for images, PyAV for video), with the
extension only deciding which sniffer is asked first: a ``.jpg`` that is really an
MP4 is a video, a photo without an extension is an image, and a text file named
``.png`` is an error that names it.

CVAT's 2D context-image convention (spec §5.1) is applied here: for a scene image
``<dir>/<name>.<ext>``, images under ``<dir>/related_images/<name>_<ext>/`` (at any
depth) are its related images, and nothing under a ``related_images`` directory is a
frame.  macOS litter (``__MACOSX``, ``__MSOSX``, ``.DS_Store``, ``._*``) is ignored.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import av
import av.error
from PIL import Image

from framesvc.media.archives import is_junk_name
from framesvc.media.errors import MediaError
from framesvc.media.limits import MediaLimits
from framesvc.media.probe import NOT_IMAGE_FORMATS, is_still_image_container, pick_video_stream

__all__ = ["NO_MEDIA", "DiscoveredMedia", "SceneImage", "discover", "sniff"]

NO_MEDIA = "No media files found"
RELATED_DIR = "related_images"

#: Extensions that make Pillow the first sniffer (a hint only, never a verdict).
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".gif", ".tif", ".tiff",
    ".webp", ".heic", ".heif", ".avif", ".jp2", ".j2k", ".jpx", ".ppm", ".pgm", ".pbm", ".pnm",
    ".ico", ".tga", ".psd", ".qoi", ".dds", ".pcx", ".sgi", ".xbm",
})
#: Extensions that make PyAV the first sniffer.
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".m2v", ".mpe",
    ".ts", ".m2ts", ".mts", ".wmv", ".asf", ".flv", ".3gp", ".3g2", ".ogv", ".ogg", ".mxf",
    ".vob", ".h264", ".264", ".h265", ".265", ".hevc", ".ivf", ".y4m", ".mjpeg", ".mjpg", ".dv",
    ".rm", ".rmvb", ".nut",
})
#: Pillow formats with a real magic number: when Pillow says so, it is an image.
_STRONG_IMAGE_FORMATS = frozenset(
    {"JPEG", "MPO", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "HEIF", "AVIF", "JPEG2000", "PPM",
     "ICO", "CUR", "PSD", "QOI", "DDS", "ICNS", "SGI", "PCX", "BLP", "FLI"}
)

@dataclass
class SceneImage:
    #: Absolute path of the file.
    path: Path
    #: Posix path relative to the root, as CVAT's meta ``name`` (with extension).
    name: str
    #: Names (posix, relative to the root) of its related images, sorted by path.
    related: list[str] = field(default_factory=list)


@dataclass
class DiscoveredMedia:
    kind: Literal["images", "video"]
    #: Scene images in discovery order (the orchestrator applies ``sorting_method``).
    images: list[SceneImage]
    #: The video file (absolute) for ``kind == "video"``.
    video: Path | None


def discover(root: Path, entries: list[Path], limits: MediaLimits) -> DiscoveredMedia:
    """Classify the files named by ``entries`` (files or directories inside ``root``).

    Entries may be absolute or relative to ``root``; directories are walked (sorted,
    following links only while they stay inside ``root``).  A file listed twice counts
    once.  Raises ``MediaError`` naming the file for: a file that is neither an image
    nor a video; a video together with images; two videos; an entry that does not
    exist or lies outside ``root``; and, naming no file, an upload with no media at all.
    """
    del limits  # sizes are checked by probe_image/index_video, which run next
    root_real = Path(os.path.realpath(root))
    files = _collect(root, root_real, entries)

    scene_paths: list[tuple[Path, str]] = []
    related_paths: list[tuple[Path, str]] = []
    for path, name in files:
        if RELATED_DIR in PurePosixPath(name).parts[:-1]:
            related_paths.append((path, name))
        else:
            scene_paths.append((path, name))

    images: list[SceneImage] = []
    videos: list[tuple[Path, str]] = []
    for path, name in scene_paths:
        kind = sniff(path)
        if kind is None:
            raise MediaError(name, "not an image or video file")
        if kind == "video":
            videos.append((path, name))
        else:
            images.append(SceneImage(path=path, name=name))

    if videos and images:
        raise MediaError(
            videos[0][1],
            f"a video cannot be combined with images (also found {images[0].name})",
        )
    if len(videos) > 1:
        raise MediaError(
            videos[1][1], f"only one video per task is supported (also found {videos[0][1]})"
        )
    if videos:
        return DiscoveredMedia(kind="video", images=[], video=videos[0][0])
    if not images:
        raise MediaError("", NO_MEDIA)
    _attach_related(images, related_paths)
    return DiscoveredMedia(kind="images", images=images, video=None)


def _collect(root: Path, root_real: Path, entries: list[Path]) -> list[tuple[Path, str]]:
    """Absolute paths and root-relative posix names of every non-junk file, once each."""
    seen: set[str] = set()
    out: list[tuple[Path, str]] = []

    def add(path: Path) -> None:
        real = Path(os.path.realpath(path))
        if not _inside(real, root_real):
            raise MediaError(_display(root, path), "points outside the upload directory")
        name = _relative(root, path)
        if is_junk_name(name) or name in seen:
            return
        seen.add(name)
        out.append((Path(os.path.abspath(path)), name))

    for entry in entries:
        path = entry if entry.is_absolute() else root / entry
        if not _inside(Path(os.path.abspath(path)), Path(os.path.abspath(root))):
            raise MediaError(str(entry), "is outside the upload directory")
        if is_junk_name(_relative(root, path)):
            continue
        if path.is_dir():
            for file in _walk(path, root_real):
                add(file)
        elif path.is_file():
            add(path)
        else:
            raise MediaError(_display(root, path), "no such file or directory")
    return out


def _walk(directory: Path, root_real: Path) -> list[Path]:
    """Files under ``directory``, sorted, following links that stay inside the root."""
    files: list[Path] = []
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited or not _inside(Path(real), root_real):
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = sorted(d for d in dirnames if d not in ("__MACOSX", "__MSOSX"))
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if path.is_file():
                files.append(path)
    return files


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _relative(root: Path, path: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def _display(root: Path, path: Path) -> str:
    rel = _relative(root, path)
    return path.name if rel.startswith("..") else rel


def _attach_related(images: list[SceneImage], related: list[tuple[Path, str]]) -> None:
    """Give each scene image the images of its ``related_images/<name>_<ext>/`` folder.

    Files there that are not images, and folders that match no scene image, are
    ignored, as CVAT does.
    """
    by_folder: dict[tuple[str, str], SceneImage] = {}
    for image in images:
        pure = PurePosixPath(image.name)
        folder = "_".join(pure.name.rsplit(".", 1))
        by_folder[(pure.parent.as_posix(), folder)] = image
    for path, name in related:
        parts = PurePosixPath(name).parts
        i = parts.index(RELATED_DIR)
        if i + 2 >= len(parts):  # a file directly inside related_images/
            continue
        parent = PurePosixPath(*parts[:i]).as_posix() if i else "."
        scene = by_folder.get((parent, parts[i + 1]))
        if scene is not None and _pillow_format(path) not in (None, *NOT_IMAGE_FORMATS):
            scene.related.append(name)
    for image in images:
        image.related.sort()


def sniff(path: Path) -> Literal["image", "video"] | None:
    """``"image"``, ``"video"`` or None, from the file's content; the extension only
    chooses which library looks first."""
    ext = path.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        if _is_video(path):
            return "video"
        return "image" if _image_format_ok(_pillow_format(path)) else None
    fmt = _pillow_format(path)
    if fmt in _STRONG_IMAGE_FORMATS or (ext in IMAGE_EXTENSIONS and _image_format_ok(fmt)):
        return "image"
    if _is_video(path):
        return "video"
    return "image" if _image_format_ok(fmt) else None


def _image_format_ok(fmt: str | None) -> bool:
    return fmt is not None and fmt not in NOT_IMAGE_FORMATS


_BOMB = "<decompression bomb>"


def _pillow_format(path: Path) -> str | None:
    """Pillow's format name for the file (headers only), or None if it is no image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.format or "UNKNOWN"
    except Image.DecompressionBombError:
        return _BOMB  # an image, and probe_image will say why it is refused
    except Exception:
        return None


def _is_video(path: Path) -> bool:
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if is_still_image_container(container):
                return False
            return pick_video_stream(container) is not None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return False
