"""Loading source images for chunks, with CVAT's mode conversions (spec §3.2).

Two products per source image:

* **compressed**: a decoded 8-bit picture (``RGB`` or ``L``) ready for the JPEG
  encoder, prepared exactly as CVAT's ``ZipCompressedChunkWriter._compress_image``
  does: EXIF orientation applied; 32-bit ``I`` images scaled by ``256 / max`` (256, not
  255: CVAT's choice, the brightest pixels clip to 255); 16-bit ``I;16`` images shifted
  to start at 0, scaled to 0..255 as ``L`` and then *histogram-equalised*
  (``ImageOps.equalize``).  Equalisation changes how the picture looks, but it is what
  CVAT clients have always been shown for 16-bit sources (typically dark medical or
  thermal images), so it is kept for compatibility.  We apply the same to the
  big-endian/little-endian spellings ``I;16B``/``I;16L``, which CVAT would pass to
  ``convert("RGB")`` and clip.  Every other mode except ``RGB``/``L`` becomes ``RGB``
  (alpha dropped, not composited); ``L`` stays grayscale.
* **original**: the source bytes unchanged with the source extension, except that an
  image with an EXIF orientation other than 1 is transposed and re-saved in its own
  format (``quality=100, subsampling=0``), and a TIFF is always re-saved as LZW TIFF
  (after transposing).

Truncated files: CVAT sets ``ImageFile.LOAD_TRUNCATED_IMAGES = True`` for the whole
process, so a truncated upload still yields a (partly grey) frame.  We accept them too
(a task CVAT serves must be servable here), but without flipping the flag for the
whole process: a strict load is tried first and only a file that fails as truncated is
loaded again with the flag raised, under a lock.  Other code in the process (ingest
validation) keeps Pillow's strict default.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from framesvc.media.errors import MediaError

_EXIF_ORIENTATION = 0x0112
_truncated_lock = threading.Lock()
_heif_registered = False


def _register_plugins() -> None:
    """Let Pillow open HEIC/HEIF/AVIF sources (pillow-heif), once per process."""
    global _heif_registered
    if _heif_registered:
        return
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
        pass
    _heif_registered = True


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open lazily (header only); the caller closes it."""
    _register_plugins()
    try:
        return Image.open(path)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(os.path.basename(os.fspath(path)), f"cannot read image: {exc}") from exc


def _is_truncation(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "truncated" in text or "broken data stream" in text


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image, accepting truncated files as CVAT does."""
    image = open_image(path)
    try:
        image.load()
        return image
    except OSError as exc:
        image.close()
        if not _is_truncation(exc):
            raise MediaError(
                os.path.basename(os.fspath(path)), f"cannot decode image: {exc}"
            ) from exc
    with _truncated_lock:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            image = open_image(path)
            image.load()
            return image
        except OSError as exc:
            name = os.path.basename(os.fspath(path))
            raise MediaError(name, f"cannot decode image: {exc}") from exc
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def exif_orientation(image: Image.Image) -> int:
    """EXIF orientation tag (1..8); 1 when absent or unreadable."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF must not make a frame unservable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Transpose by EXIF orientation; returns the same object when nothing to do."""
    if exif_orientation(image) == 1:
        return image
    return ImageOps.exif_transpose(image)


def _scale_int32(image: Image.Image) -> Image.Image:
    data = np.asarray(image, dtype=np.float64)
    top = float(data.max()) if data.size else 0.0
    if top > 0:
        data = data * (256.0 / top)
    return Image.fromarray(data.astype(np.int32), "I")


def _equalize_16bit(image: Image.Image) -> Image.Image:
    data = np.asarray(image).astype(np.float64)
    if data.size:
        data -= data.min()
        top = data.max()
        if top > 0:
            data *= 255.0 / top
    return ImageOps.equalize(Image.fromarray(data.astype(np.uint8), "L"))


def to_chunk_mode(image: Image.Image) -> Image.Image:
    """CVAT's compressed-chunk preprocessing: orientation, then ``RGB`` or ``L``."""
    image = apply_exif_orientation(image)
    mode = image.mode
    if mode == "I":
        image = _scale_int32(image)
    elif mode.startswith("I;16"):
        image = _equalize_16bit(image)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image


def image_to_array(image: Image.Image) -> np.ndarray:
    """``RGB`` → HxWx3, ``L`` → HxW uint8 array (what the encoders take)."""
    return np.asarray(image)


def load_compressed_array(path: str | os.PathLike[str]) -> np.ndarray:
    """A source image decoded and converted for a compressed chunk."""
    with load_image(path) as image:
        return image_to_array(to_chunk_mode(image))


def source_extension(path: str | os.PathLike[str]) -> str:
    """The extension including its dot, case preserved (``.PNG``), or ``""``."""
    return os.path.splitext(os.fspath(path))[1]


def original_entry(path: str | os.PathLike[str]) -> tuple[bytes, str]:
    """Bytes and extension (with dot) of a source image in an *original* chunk.

    Unchanged bytes unless the image needs transposing (EXIF orientation ≠ 1) or is a
    TIFF (always LZW-recompressed, as CVAT does).  If Pillow cannot write the source
    format back, the untouched bytes are kept (the frame is served un-rotated rather
    than not at all).
    """
    ext = source_extension(path)
    with open_image(path) as probe:
        fmt = probe.format or ""
        orientation = exif_orientation(probe)
    if fmt != "TIFF" and orientation == 1:
        return Path(path).read_bytes(), ext
    with load_image(path) as image:
        fixed = ImageOps.exif_transpose(image) if orientation != 1 else image
        buf = io.BytesIO()
        try:
            if fmt == "TIFF":
                fixed.save(buf, "TIFF", compression="tiff_lzw")
            else:
                fixed.save(buf, fmt, quality=100, subsampling=0)
        except (OSError, KeyError, ValueError):
            return Path(path).read_bytes(), ext
    return buf.getvalue(), ext
