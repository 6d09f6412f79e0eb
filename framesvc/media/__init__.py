"""The media library: files on disk in, facts and frames out; no HTTP, no database.

Ingest uses the pieces re-exported here: :func:`is_archive` / :func:`extract_archive`
(safe unpacking), :func:`discover` (what the upload is: images with their context
images, or one video), :func:`probe_image` (header facts) and :func:`index_video`
(the keyframe index that makes later frame reads cheap).
"""

from framesvc.media.archives import extract_archive, is_archive
from framesvc.media.discover import DiscoveredMedia, SceneImage, discover
from framesvc.media.errors import MediaError
from framesvc.media.limits import MediaLimits
from framesvc.media.probe import ImageInfo, VideoIndex, VideoInfo, index_video, probe_image

__all__ = [
    "DiscoveredMedia",
    "ImageInfo",
    "MediaError",
    "MediaLimits",
    "SceneImage",
    "VideoIndex",
    "VideoInfo",
    "discover",
    "extract_archive",
    "index_video",
    "is_archive",
    "probe_image",
]
