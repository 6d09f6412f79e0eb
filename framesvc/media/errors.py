"""The one exception the media library raises for input it refuses.

Ingest turns it into a CVAT-style 400 whose message names the offending file, so
``str()`` must read well on its own: ``"clip.mp4: no video stream"``.
"""

from __future__ import annotations


class MediaError(Exception):
    """A file that cannot be ingested; ``str()`` names the file and the reason.

    ``filename`` may be empty for errors about the upload as a whole ("No media files
    found"); ``str()`` is then the reason alone.
    """

    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(f"{filename}: {reason}" if filename else reason)
        self.filename = filename
        self.reason = reason

    def __reduce__(self) -> tuple[type[MediaError], tuple[str, str]]:
        # Exceptions pickle their ``args`` by default, which would call __init__ with the
        # formatted message only; keep both fields when crossing process boundaries.
        return (type(self), (self.filename, self.reason))
