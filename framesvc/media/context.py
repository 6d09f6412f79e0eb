"""Context (related) image zips for ``type=context_image`` (spec §5.2).

One deflated zip per frame, one entry per related image in path order, named by the
image's path relative to the common directory of the frame's related images with the
extension replaced by ``.jpg``.  Each image is decoded with Pillow, converted to RGB
unless it is RGB or L, and re-encoded as JPEG quality 100 (CVAT uses Pillow's
``optimize=True``; we use libjpeg-turbo without Huffman optimisation, a few per cent
larger and several times faster).

CVAT would write two entries with the same name for ``cam1.png`` and ``cam1.jpg`` in
one folder; a zip with duplicate names extracts badly, so the second one keeps its
original extension before ``.jpg`` (``cam1.png.jpg``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import IO

import numpy as np

from framesvc.media.encode import encode_jpeg, write_zip
from framesvc.media.images import load_image

CONTEXT_QUALITY = 100
ZIP_MIME = "application/zip"

PathLike = str | os.PathLike[str]


def context_entry_names(paths: Sequence[str]) -> list[str]:
    """Entry names for related images given in their final (sorted) order."""
    if not paths:
        return []
    parents = [os.path.dirname(p) for p in paths]
    common = os.path.commonpath(parents) if all(parents) else ""
    names: list[str] = []
    used: set[str] = set()
    for path in paths:
        relative = os.path.relpath(path, common) if common else path
        relative = relative.replace(os.sep, "/")
        name = os.path.splitext(relative)[0] + ".jpg"
        if name in used:
            name = relative + ".jpg"
        used.add(name)
        names.append(name)
    return names


def _context_jpeg(path: PathLike) -> bytes:
    with load_image(path) as image:
        converted = image if image.mode in ("RGB", "L") else image.convert("RGB")
        return encode_jpeg(np.asarray(converted), CONTEXT_QUALITY)


def build_context_zip(related_paths: Sequence[PathLike], out: IO[bytes]) -> str:
    """Write the context-image zip of one frame; returns the MIME type.

    ``related_paths`` are the frame's related image files (any order: they are sorted
    by path, as CVAT orders ``RelatedFile`` rows).  The caller answers 404 when a frame
    has none; an empty list still produces a valid empty zip.
    """
    paths = sorted(os.fspath(p) for p in related_paths)
    names = context_entry_names(paths)

    def entries() -> Iterator[tuple[str, bytes]]:
        for name, path in zip(names, paths, strict=True):
            yield name, _context_jpeg(path)

    write_zip(out, entries(), deflate=True)
    return ZIP_MIME
