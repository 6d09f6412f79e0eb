"""HEIC (pillow-heif plugin) and AVIF images are ingested and converted like any other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framesvc.media.discover import sniff
from framesvc.media.images import load_compressed_array
from framesvc.media.limits import MediaLimits
from framesvc.media.probe import probe_image


@pytest.mark.parametrize(("ext", "fmt"), [("heic", "HEIF"), ("avif", "AVIF")])
def test_heif_and_avif_probe_and_decode(tmp_path: Path, ext: str, fmt: str) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    path = tmp_path / f"photo.{ext}"
    Image.new("RGB", (64, 48), (200, 40, 30)).save(path, format=fmt, quality=90)

    assert sniff(path) == "image"
    info = probe_image(path, MediaLimits())
    assert (info.width, info.height, info.format) == (64, 48, fmt)

    pixels = np.asarray(load_compressed_array(path))
    assert pixels.shape[:2] == (48, 64)
    assert abs(float(pixels[..., 0].mean()) - 200) < 12
