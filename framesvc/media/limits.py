"""Limits checked while ingesting media, before the expensive work starts.

They live apart from :class:`framesvc.config.Settings` so the media library can be used
(and tested) without the whole service configuration, in the spirit of imgproxy: every
step knows its bound and refuses early, from headers, instead of discovering the cost
by paying it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framesvc.config import Settings


@dataclass(frozen=True)
class MediaLimits:
    #: Largest ``width * height`` of one image, read from its header (decompression bombs).
    max_image_pixels: int = 300_000_000
    #: Most entries (files and directories) one archive may hold.
    max_archive_entries: int = 100_000
    #: Most bytes one archive may expand to, declared and actually written.
    max_archive_bytes: int = 50 * 1024**3
    #: Largest ratio of expanded bytes to the archive's size on disk (zip bombs).
    max_archive_ratio: int = 200
    #: Most frames one video may have.
    max_video_frames: int = 10_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaLimits:
        return cls(
            max_image_pixels=settings.max_image_pixels,
            max_archive_entries=settings.max_archive_entries,
            max_archive_bytes=settings.max_archive_bytes,
            max_archive_ratio=settings.max_archive_ratio,
            max_video_frames=settings.max_video_frames,
        )


def configure_pillow(max_image_pixels: int) -> None:
    """Make Pillow's process-wide bomb guard agree with ``max_image_pixels``.

    Pillow warns above ``Image.MAX_IMAGE_PIXELS`` and refuses to open images above twice
    that (~179 MP by default), which would reject images our own limit allows (300 MP by
    default) with a less helpful message, and at serving time.  With the two equal, our
    header check refuses everything over the limit first, and Pillow only ever refuses
    what we refused already.
    """
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_image_pixels
