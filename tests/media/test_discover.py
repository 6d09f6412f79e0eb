"""discover() on real files: content sniffing, related images, junk, and the errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mediagen as gen
import pytest

from framesvc.media import MediaError, MediaLimits, discover, extract_archive

LIMITS = MediaLimits()


def test_related_images_tree(media_dir: Path) -> None:
    root = gen.related_tree(media_dir / "discover_tree")
    found = discover(root, [root], LIMITS)
    assert found.kind == "images" and found.video is None
    by_name = {img.name: img for img in found.images}
    assert set(by_name) == set(gen.RELATED_TREE_SCENES)
    for name, related in gen.RELATED_TREE_SCENES.items():
        assert by_name[name].related == related
        assert by_name[name].path == root / name
        assert by_name[name].path.is_absolute()


def test_tree_from_an_archive_with_relative_entries(tmp_path: Path) -> None:
    """The orchestrator's path: extract, then discover the extracted files by name."""
    tree = gen.related_tree(tmp_path / "src")
    archive = gen.zip_of_tree(tree, tmp_path / "upload.zip")
    raw = tmp_path / "raw"
    files = extract_archive(archive, raw, LIMITS)
    found = discover(raw, [p.relative_to(raw) for p in files], LIMITS)
    assert {img.name for img in found.images} == set(gen.RELATED_TREE_SCENES)
    assert {img.name: img.related for img in found.images} == gen.RELATED_TREE_SCENES


def test_files_and_directories_are_merged_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    a = gen.write_image(root / "d/a.png", 1, format="PNG")
    gen.write_image(root / "d/b.jpg", 2, format="JPEG")
    gen.write_image(root / "c.bmp", 3, format="BMP")
    found = discover(root, [Path("d"), a, Path("c.bmp"), Path("d/a.png")], LIMITS)
    assert [img.name for img in found.images] == ["d/a.png", "d/b.jpg", "c.bmp"]
    assert all(img.related == [] for img in found.images)


def test_one_video(tmp_path: Path) -> None:
    video = gen.h264_bframes(tmp_path / "root", frames=6)
    (tmp_path / "root" / ".DS_Store").write_bytes(b"junk")
    found = discover(tmp_path / "root", [Path(".")], LIMITS)
    assert (found.kind, found.video, found.images) == ("video", video, [])


def test_classification_is_by_content(tmp_path: Path) -> None:
    root = tmp_path / "root"
    jpeg_as_bin = gen.write_image(root / "photo.bin", 1, format="JPEG")
    png_as_mp4 = gen.write_image(root / "still.mp4", 2, format="PNG")
    no_ext = gen.write_image(root / "noext", 3, format="PNG")
    found = discover(root, [jpeg_as_bin, png_as_mp4, no_ext], LIMITS)
    assert [img.name for img in found.images] == ["photo.bin", "still.mp4", "noext"]

    vroot = tmp_path / "vroot"
    video = gen.vp9(vroot, frames=4)
    disguised = video.rename(vroot / "clip.jpg")
    found = discover(vroot, [disguised], LIMITS)
    assert found.kind == "video" and found.video == disguised


def test_not_media_is_an_error_naming_the_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    gen.write_image(root / "a.png", 1, format="PNG")
    (root / "sub").mkdir()
    gen.not_media(root / "sub", "notes.png")
    with pytest.raises(MediaError, match=r"^sub/notes\.png: not an image or video file$"):
        discover(root, [root], LIMITS)
    (root / "sub" / "notes.png").unlink()
    (root / "sub" / "data.txt").write_text("hello")
    with pytest.raises(MediaError, match=r"sub/data\.txt"):
        discover(root, [root], LIMITS)


def test_video_with_images_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    gen.write_image(root / "a.png", 1, format="PNG")
    gen.mjpeg(root, "avi", frames=3)
    with pytest.raises(MediaError, match=r"^mjpeg\.avi: a video cannot be combined with images"):
        discover(root, [root], LIMITS)


def test_two_videos_are_an_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    gen.mjpeg(root, "avi", frames=3)
    gen.mjpeg(root, "mov", frames=3)
    with pytest.raises(MediaError, match=r"^mjpeg\.mov: only one video per task"):
        discover(root, [root], LIMITS)


def test_nothing_at_all_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "__MACOSX").mkdir(parents=True)
    (root / "__MACOSX" / "._a.png").write_bytes(b"x")
    (root / ".DS_Store").write_bytes(b"x")
    (root / "empty").mkdir()
    for entries in ([root], [Path("empty")], [], [Path(".DS_Store")]):
        with pytest.raises(MediaError, match=r"^No media files found$"):
            discover(root, entries, LIMITS)


def test_only_related_images_is_no_media(tmp_path: Path) -> None:
    root = tmp_path / "root"
    gen.write_image(root / "related_images/a_png/x.png", 1, format="PNG")
    with pytest.raises(MediaError, match="No media files found"):
        discover(root, [root], LIMITS)


def test_entries_outside_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    gen.write_image(root / "a.png", 1, format="PNG")
    outside = gen.write_image(tmp_path / "secret.png", 2, format="PNG")
    with pytest.raises(MediaError, match="outside the upload directory"):
        discover(root, [Path("../secret.png")], LIMITS)
    with pytest.raises(MediaError, match="outside the upload directory"):
        discover(root, [outside], LIMITS)
    with pytest.raises(MediaError, match=r"missing\.png: no such file"):
        discover(root, [Path("missing.png")], LIMITS)


def test_symlinks_may_not_leave_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    gen.write_image(root / "a.png", 1, format="PNG")
    secret_dir = tmp_path / "secret"
    gen.write_image(secret_dir / "s.png", 2, format="PNG")
    os.symlink(secret_dir / "s.png", root / "link.png")
    with pytest.raises(MediaError, match=r"link\.png: points outside the upload directory"):
        discover(root, [root], LIMITS)
    (root / "link.png").unlink()
    os.symlink(secret_dir, root / "linkdir")
    found = discover(root, [root], LIMITS)  # a linked directory outside is not walked
    assert [img.name for img in found.images] == ["a.png"]
    # Links that stay inside the root are fine, and a loop does not hang the walk.
    (root / "linkdir").unlink()
    os.symlink(root, root / "loop")
    inner = root / "inner"
    inner.mkdir()
    shutil.copy(root / "a.png", inner / "b.png")
    found = discover(root, [root], LIMITS)
    assert sorted(img.name for img in found.images) == ["a.png", "inner/b.png"]
