"""Safe unpacking of uploaded archives (zip, tar, tar.gz/.bz2/.xz).

An archive is hostile until proven otherwise: entry names may climb out of the
destination (``../evil``, ``/etc/passwd``), entries may be links or devices, and a few
kilobytes may claim to expand to terabytes.  Every check that can be made from the
headers is made before anything is written; sizes are then counted again while the
bytes stream out, because headers lie.  Only regular files and directories are ever
created, each with an exclusive create inside ``dest``; on any error the files this
call created are removed again.

Archive kinds are recognised by their magic bytes, never by the file name.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from framesvc.media.errors import MediaError
from framesvc.media.limits import MediaLimits

__all__ = ["archive_kind", "extract_archive", "is_archive", "is_junk_name"]

_COPY_BLOCK = 1024 * 1024

#: macOS Finder litter: resource forks and folder settings, never media.
_JUNK_DIRS = frozenset({"__MACOSX", "__MSOSX"})
_JUNK_FILES = frozenset({".DS_Store", "._.DS_Store"})


def is_junk_name(posix_path: str) -> bool:
    """True for ``__MACOSX``/``__MSOSX`` trees, ``.DS_Store`` and AppleDouble ``._*`` files."""
    parts = PurePosixPath(posix_path).parts
    if any(part in _JUNK_DIRS for part in parts):
        return True
    base = parts[-1] if parts else ""
    return base in _JUNK_FILES or base.startswith("._")


def archive_kind(path: Path) -> str | None:
    """``"zip"``, ``"tar"``, ``"7z"`` or ``"rar"`` from the file's first bytes, else None.

    A gzip/bzip2/xz stream is a ``"tar"`` only when what it decompresses to starts
    with a valid tar header; a compressed single image is not an archive.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return "7z"
    if head[:6] == b"Rar!\x1a\x07":
        return "rar"
    opener = _decompressor_for(head)
    if opener is not None:
        try:
            with opener(path) as stream:
                return "tar" if _is_tar_header(stream.read(512)) else None
        except (OSError, EOFError, lzma.LZMAError, ValueError):
            return None
    return "tar" if _is_tar_header(head) else None


def is_archive(path: Path) -> bool:
    """Whether ``path`` is an archive (zip, tar, compressed tar, or 7z/rar, which
    :func:`extract_archive` names as unsupported), judged by content, not name."""
    return archive_kind(path) is not None


def _decompressor_for(head: bytes):  # type: ignore[no-untyped-def]
    if head[:2] == b"\x1f\x8b":
        return gzip.open
    if head[:3] == b"BZh":
        return bz2.open
    if head[:6] == b"\xfd7zXZ\x00":
        return lzma.open
    return None


def _is_tar_header(block: bytes) -> bool:
    """A 512-byte tar header: ``ustar`` magic, or a valid checksum (old V7 archives)."""
    if len(block) < 512 or block == b"\x00" * 512:
        return False
    if block[257:262] == b"ustar":
        return True
    try:
        stored = int(block[148:156].split(b"\x00", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return stored == unsigned


def extract_archive(path: Path, dest: Path, limits: MediaLimits) -> list[Path]:
    """Unpack ``path`` into ``dest`` and return the regular files written, in archive order.

    Refused with ``MediaError`` (nothing left behind): absolute names or ``..``;
    symlinks, hard links, devices and FIFOs; more than ``limits.max_archive_entries``
    entries; more than ``limits.max_archive_bytes`` in total or more than
    ``limits.max_archive_ratio`` times the archive's size, declared or actually
    streamed (an entry that grows past its declared size is a lie, also refused);
    two entries with the same normalised name; encrypted entries; 7z and rar.
    Ignored: ``__MACOSX``/``__MSOSX`` trees, ``.DS_Store`` and ``._*`` files.
    """
    name = path.name
    kind = archive_kind(path)
    if kind is None:
        raise MediaError(name, "not a zip or tar archive")
    if kind in ("7z", "rar"):
        raise MediaError(name, f"{kind} archives are not supported; use zip or tar")
    dest.mkdir(parents=True, exist_ok=True)
    writer = _Writer(name, dest, limits, archive_size=path.stat().st_size)
    try:
        if kind == "zip":
            _extract_zip(path, writer)
        else:
            _extract_tar(path, writer)
    except MediaError:
        writer.rollback()
        raise
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, lzma.LZMAError,
            NotImplementedError, RuntimeError, ValueError) as exc:
        writer.rollback()
        raise MediaError(name, f"corrupt archive: {exc}") from None
    except BaseException:
        writer.rollback()
        raise
    return writer.files


class _Writer:
    """Creates files and directories under ``dest``, enforcing names and limits."""

    def __init__(self, archive: str, dest: Path, limits: MediaLimits, archive_size: int) -> None:
        self.archive = archive
        self.dest = dest.resolve()
        self.limits = limits
        self.archive_size = max(archive_size, 1)
        self.files: list[Path] = []
        self.created_dirs: list[Path] = []
        self.names: set[str] = set()
        self.entries = 0
        self.written = 0

    # -- checks -------------------------------------------------------------------

    def fail(self, reason: str) -> MediaError:
        return MediaError(self.archive, reason)

    def count_entry(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_archive_entries:
            raise self.fail(
                f"archive has more than {self.limits.max_archive_entries} entries, the limit"
            )

    def check_total(self, total: int, what: str) -> None:
        if total > self.limits.max_archive_bytes:
            raise self.fail(
                f"archive {what} {total} bytes, over the limit of {self.limits.max_archive_bytes}"
            )
        ratio_limit = self.limits.max_archive_ratio * self.archive_size
        if total > ratio_limit:
            raise self.fail(
                f"archive {what} {total} bytes from {self.archive_size}: a compression ratio "
                f"over {self.limits.max_archive_ratio} (a decompression bomb?)"
            )

    def safe_name(self, raw: str) -> str | None:
        """The normalised posix name of an entry, None for junk; refuses unsafe names."""
        text = raw.replace("\\", "/")
        if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
            raise self.fail(f"entry {raw!r} has an absolute path")
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            raise self.fail(f"entry {raw!r} points outside the archive")
        if any("\x00" in p for p in parts):
            raise self.fail(f"entry {raw!r} has an invalid name")
        if not parts:
            return None
        normalised = "/".join(parts)
        return None if is_junk_name(normalised) else normalised

    def target(self, normalised: str) -> Path:
        target = self.dest.joinpath(*normalised.split("/"))
        # Defence in depth: the checks above already exclude escapes, and nothing in
        # dest is a link we created, but a pre-existing link must not be followed.
        resolved_parent = target.parent.resolve()
        if resolved_parent != self.dest and self.dest not in resolved_parent.parents:
            raise self.fail(f"entry {normalised!r} resolves outside the destination")
        return target

    # -- writing ------------------------------------------------------------------

    def make_dir(self, normalised: str) -> None:
        self._ensure_dirs(self.target(normalised), include_self=True)

    def _ensure_dirs(self, path: Path, include_self: bool = False) -> None:
        chain = [path] if include_self else []
        chain += [p for p in path.parents if p == self.dest or self.dest in p.parents]
        for directory in reversed(chain):
            if directory == self.dest:
                continue
            if directory.is_symlink():
                raise self.fail(f"{directory.relative_to(self.dest)} is a link in the destination")
            if directory.is_dir():
                continue
            try:
                directory.mkdir()
            except FileExistsError:
                raise self.fail(
                    f"entry {directory.relative_to(self.dest).as_posix()!r} is both a file "
                    "and a directory"
                ) from None
            self.created_dirs.append(directory)

    def write_file(self, normalised: str, declared: int, source: IO[bytes]) -> None:
        if normalised in self.names:
            raise self.fail(f"duplicate entry {normalised!r}")
        self.names.add(normalised)
        target = self.target(normalised)
        self._ensure_dirs(target)
        try:
            out = open(target, "xb")  # noqa: SIM115 - closed below, rolled back on error
        except FileExistsError:
            raise self.fail(f"duplicate entry {normalised!r}") from None
        except IsADirectoryError:
            raise self.fail(f"entry {normalised!r} is both a file and a directory") from None
        self.files.append(target)
        entry_bytes = 0
        with out:
            while True:
                block = source.read(_COPY_BLOCK)
                if not block:
                    break
                entry_bytes += len(block)
                if entry_bytes > declared:
                    raise self.fail(
                        f"entry {normalised!r} expands past its declared size of {declared} bytes"
                    )
                self.written += len(block)
                self.check_total(self.written, "expands to over")
                out.write(block)

    def rollback(self) -> None:
        for file in reversed(self.files):
            with contextlib.suppress(OSError):
                file.unlink()
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                directory.rmdir()
        self.files = []
        self.created_dirs = []


def _zip_mode(info: zipfile.ZipInfo) -> int:
    """The Unix file type bits of a zip entry (0 when the creator was not Unix)."""
    return stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0


def _extract_zip(path: Path, writer: _Writer) -> None:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > writer.limits.max_archive_entries:
            raise writer.fail(
                f"archive has {len(infos)} entries, over the limit of "
                f"{writer.limits.max_archive_entries}"
            )
        plan: list[tuple[zipfile.ZipInfo, str]] = []
        declared_total = 0
        for info in infos:
            mode = _zip_mode(info)
            if mode and mode not in (stat.S_IFREG, stat.S_IFDIR):
                kind = "a symbolic link" if mode == stat.S_IFLNK else "not a regular file"
                raise writer.fail(f"entry {info.filename!r} is {kind}")
            normalised = writer.safe_name(info.filename)
            if normalised is None:
                continue
            if info.flag_bits & 0x1:
                raise writer.fail(f"entry {info.filename!r} is encrypted")
            writer.count_entry()
            if not (info.is_dir() or mode == stat.S_IFDIR):
                declared_total += info.file_size
            plan.append((info, normalised))
        writer.check_total(declared_total, "declares")
        for info, normalised in plan:
            if info.is_dir() or _zip_mode(info) == stat.S_IFDIR:
                writer.make_dir(normalised)
                continue
            with zf.open(info) as source:
                writer.write_file(normalised, info.file_size, source)


def _extract_tar(path: Path, writer: _Writer) -> None:
    # Streaming mode ("r|*"): a compressed tar is read once, front to back, and no
    # member list is built in memory before the limits have had their say.
    with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:
        for member in _members(tf):
            writer.count_entry()
            if member.issym() or member.islnk():
                kind = "a symbolic link" if member.issym() else "a hard link"
                raise writer.fail(f"entry {member.name!r} is {kind}")
            if not (member.isfile() or member.isdir()):
                raise writer.fail(f"entry {member.name!r} is not a regular file")
            normalised = writer.safe_name(member.name)
            if normalised is None:
                continue
            if member.isdir():
                writer.make_dir(normalised)
                continue
            writer.check_total(writer.written + member.size, "declares")
            source = tf.extractfile(member)
            if source is None:  # pragma: no cover - isfile() members always have data
                raise writer.fail(f"entry {member.name!r} has no data")
            with source:
                writer.write_file(normalised, member.size, source)


def _members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = tf.next()
        if member is None:
            return
        yield member
