"""256×256 previews of tasks and jobs (spec §4).

CVAT thumbnails the first frame of the segment to fit 256×256 (aspect kept, never
upscaled, Pillow's default resampling) after applying EXIF orientation, and saves a
JPEG at Pillow's default quality 75 (its sources never carry a PNG format in
practice).  We do the same, with two shortcuts that do not change the result in a
visible way: JPEG sources are decoded at a reduced DCT scale (``Image.draft``, which
``thumbnail`` would use anyway), and video frames are read from the source video, not
from a built chunk, so a cold task list does not trigger chunk builds (§12.14).
"""

from __future__ import annotations

import io
import os
from typing import IO, TYPE_CHECKING

from PIL import Image

from framesvc.media.images import load_image, open_image, to_chunk_mode
from framesvc.media.video import READERS, decode_frame

if TYPE_CHECKING:
    from framesvc.media.probe import VideoInfo

PREVIEW_SIZE = (256, 256)
PREVIEW_QUALITY = 75
PREVIEW_MIME = "image/jpeg"

PathLike = str | os.PathLike[str]


def thumbnail_jpeg(image: Image.Image) -> bytes:
    """Fit into 256×256 keeping the aspect ratio and encode as JPEG q75."""
    image = to_chunk_mode(image)
    if image.size != PREVIEW_SIZE:
        image.thumbnail(PREVIEW_SIZE)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=PREVIEW_QUALITY)
    return buf.getvalue()


def image_preview(source: PathLike) -> bytes:
    """Preview of an image source (EXIF orientation and mode conversions applied)."""
    try:
        with open_image(source) as image:
            if image.format == "JPEG":
                # Decodes at 1/2..1/8 DCT scale.  Shrinking before the EXIF transpose
                # gives the same picture: the 256×256 box is square.
                image.thumbnail(PREVIEW_SIZE)
                return thumbnail_jpeg(image)
    except OSError:
        pass  # e.g. truncated: the tolerant full load below handles it
    with load_image(source) as image:
        return thumbnail_jpeg(image)


def video_preview(video: PathLike, info: VideoInfo, frame: int = 0) -> bytes:
    """Preview of frame ``frame`` (absolute) of a video, rotation applied."""
    return thumbnail_jpeg(Image.fromarray(decode_frame(video, info, frame, pool=READERS)))


def build_preview(
    source: PathLike,
    out: IO[bytes],
    *,
    info: VideoInfo | None = None,
    frame: int = 0,
) -> str:
    """Write the preview of an image source, or of a video frame when ``info`` is given.

    Returns the MIME type (always ``image/jpeg``).
    """
    data = image_preview(source) if info is None else video_preview(source, info, frame)
    out.write(data)
    return PREVIEW_MIME
