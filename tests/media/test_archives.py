"""extract_archive and is_archive against real and hostile archives (tests/mediagen.py).

Every refusal must name the archive, leave nothing behind in the destination, and
never write outside it (checked by looking where an escape would have landed).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import mediagen as gen
import pytest

from framesvc.media import MediaError, MediaLimits, extract_archive, is_archive
from framesvc.media.archives import archive_kind

LIMITS = MediaLimits()


@pytest.fixture(scope="module")
def tree(media_dir: Path) -> Path:
    return gen.related_tree(media_dir / "archives_tree")


def _files_under(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }


def _expected_tree(tree: Path) -> dict[str, bytes]:
    """The tree without the macOS litter the extractor drops."""
    return {
        name: data
        for name, data in _files_under(tree).items()
        if not name.startswith("__MACOSX/")
        and not Path(name).name.startswith("._")
        and Path(name).name != ".DS_Store"
    }


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "tar.bz2", "tar.xz"])
def test_archives_of_a_tree_extract_exactly(tree: Path, tmp_path: Path, kind: str) -> None:
    name = f"tree.{kind}"
    if kind == "zip":
        archive = gen.zip_of_tree(tree, tmp_path / name)
    else:
        archive = gen.tar_of_tree(tree, tmp_path / name, kind.partition(".")[2].replace("tar", ""))
    assert is_archive(archive)
    dest = tmp_path / "out"
    files = extract_archive(archive, dest, LIMITS)

    expected = _expected_tree(tree)
    assert _files_under(dest) == expected
    assert sorted(p.relative_to(dest).as_posix() for p in files) == sorted(expected)
    assert all(p.is_absolute() or p.parent.exists() for p in files)
    assert not any("__MACOSX" in p.parts or p.name.startswith("._") for p in files)


def test_archive_detection_is_by_content(tree: Path, tmp_path: Path) -> None:
    zipped = gen.zip_of_tree(tree, tmp_path / "photos.jpg")  # a zip with a photo's name
    assert archive_kind(zipped) == "zip"
    tgz = gen.tar_of_tree(tree, tmp_path / "noext", "gz")
    assert archive_kind(tgz) == "tar"
    png = gen.write_image(tmp_path / "image.zip", 1, format="PNG")  # an image named .zip
    assert not is_archive(png)
    gz_image = tmp_path / "image.png.gz"
    gz_image.write_bytes(gzip.compress(png.read_bytes(), mtime=0))
    assert not is_archive(gz_image)  # a compressed single file is not a tar
    text = gen.not_media(tmp_path, "notes.tar")
    assert not is_archive(text)
    video = gen.h264_bframes(tmp_path, frames=4)
    assert not is_archive(video)
    seven = tmp_path / "x.7z"
    seven.write_bytes(b"7z\xbc\xaf\x27\x1c" + bytes(64))
    assert archive_kind(seven) == "7z"
    with pytest.raises(MediaError, match=r"x\.7z: 7z archives are not supported"):
        extract_archive(seven, tmp_path / "seven", LIMITS)


def _assert_refused(archive: Path, dest: Path, reason: str, limits: MediaLimits = LIMITS) -> None:
    with pytest.raises(MediaError, match=reason) as err:
        extract_archive(archive, dest, limits)
    assert err.value.filename == archive.name
    assert str(err.value).startswith(f"{archive.name}: ")
    leftovers = [p for p in dest.rglob("*")] if dest.exists() else []
    assert leftovers == [], f"extraction left {leftovers}"


def test_path_traversal_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "work" / "dest"
    for archive in (gen.zip_slip(tmp_path), gen.tar_slip(tmp_path)):
        _assert_refused(archive, dest, "points outside the archive")
        assert not (dest.parent / "evil.txt").exists()
        assert not (tmp_path / "evil.txt").exists()


def test_absolute_paths_are_refused(tmp_path: Path) -> None:
    target = Path("/tmp/framesvc_evil.txt")
    existed = target.exists()
    _assert_refused(gen.zip_absolute(tmp_path), tmp_path / "dest", "absolute path")
    assert target.exists() == existed


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (gen.zip_symlink, "is a symbolic link"),
        (gen.tar_symlink, "is a symbolic link"),
        (gen.tar_hardlink, "is a hard link"),
        (gen.tar_devices, "not a regular file"),
        (gen.zip_duplicates, "duplicate entry 'a/x.png'"),
    ],
)
def test_links_devices_and_duplicates_are_refused(tmp_path: Path, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "dest"
    _assert_refused(make(tmp_path), dest, reason)
    assert not os.path.lexists(dest / "link.png") and not os.path.lexists(dest / "hard.png")


def test_zip_bomb_is_refused_from_its_headers(tmp_path: Path) -> None:
    bomb = gen.zip_bomb(tmp_path, megabytes=16)
    assert bomb.stat().st_size < 100_000
    _assert_refused(bomb, tmp_path / "dest", "compression ratio over 200")


def test_tar_bomb_is_refused(tmp_path: Path) -> None:
    _assert_refused(gen.tar_bomb(tmp_path, megabytes=16), tmp_path / "dest", "ratio over 200")


def test_an_entry_larger_than_declared_is_refused(tmp_path: Path) -> None:
    lying = gen.zip_lying_size(tmp_path, megabytes=2)
    # The central directory says 1000 bytes, so the declared ratio looks harmless.
    _assert_refused(lying, tmp_path / "dest", "lying.zip")


def test_total_size_limit(tree: Path, tmp_path: Path) -> None:
    archive = gen.zip_of_tree(tree, tmp_path / "tree.zip")
    total = sum(len(v) for v in _files_under(tree).values())
    _assert_refused(archive, tmp_path / "d1", "over the limit",
                    MediaLimits(max_archive_bytes=total // 2))
    # Streaming check: a tar declares sizes one member at a time.
    tar = gen.tar_of_tree(tree, tmp_path / "tree.tar")
    _assert_refused(tar, tmp_path / "d2", "over the limit",
                    MediaLimits(max_archive_bytes=total // 2))


def test_entry_count_limit(tmp_path: Path) -> None:
    many = gen.zip_many(tmp_path, count=3000)
    _assert_refused(many, tmp_path / "dest", "3000 entries, over the limit of 1000",
                    MediaLimits(max_archive_entries=1000))
    files = extract_archive(many, tmp_path / "ok", LIMITS)
    assert len(files) == 3000
    tar = gen.write_tar(tmp_path / "many.tar",
                        (gen.tar_file(f"f{i}.txt", b"x") for i in range(50)))
    _assert_refused(tar, tmp_path / "dest2", "more than 20 entries",
                    MediaLimits(max_archive_entries=20))


def test_corrupt_archives_are_refused(tree: Path, tmp_path: Path) -> None:
    archive = gen.zip_of_tree(tree, tmp_path / "tree.zip")
    cut = gen.truncated(archive, tmp_path, 0.5, "cut.zip")
    _assert_refused(cut, tmp_path / "d1", "cut.zip")
    tgz = gen.tar_of_tree(tree, tmp_path / "tree.tar.gz", "gz")
    cut_tgz = gen.truncated(tgz, tmp_path, 0.5, "cut.tar.gz")
    _assert_refused(cut_tgz, tmp_path / "d2", "cut.tar.gz")


def test_existing_destination_content_is_kept_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(MediaError):
        extract_archive(gen.zip_slip(tmp_path), dest, LIMITS)
    assert _files_under(dest) == {"keep.txt": b"mine"}
