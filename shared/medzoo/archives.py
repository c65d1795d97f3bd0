"""Safe extraction of zip and tar archives from elsewhere (bundle packages, downloads).

:func:`safe_extract` checks every member before anything is written: absolute paths, ``..`` components, links
escaping the target folder, hard links and special files are refused (zip-slip), and a refused archive extracts
nothing.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["UnsafeArchiveError", "safe_extract", "stays_inside", "zip_entry_kind"]


class UnsafeArchiveError(ValueError):
    """An archive with a member that would be written outside the target folder, or is not a plain file/folder."""


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # "file", "dir", "symlink", "hardlink" or "special"
    link: str = ""


def zip_entry_kind(info: zipfile.ZipInfo) -> str:
    """``"file"``, ``"dir"``, ``"symlink"`` or ``"special"`` (device, FIFO, socket) for a zip entry.

    The file type is the ``S_IFMT`` part of the Unix mode in the high 16 bits of ``external_attr``. Many zips carry no
    type there: ``zipfile.writestr`` with a plain name stores permission bits only (``0o600``), and zips written on
    Windows or by other tools store DOS attributes (low bits) or nothing at all. Such entries are files, or folders
    when the name ends in ``/``. Type bits are honoured whatever ``create_system`` says, so a link or device is never
    mistaken for a file.
    """
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type == stat.S_IFLNK:
        return "symlink"
    if info.is_dir() or file_type == stat.S_IFDIR:
        return "dir"
    return "file" if file_type in (0, stat.S_IFREG) else "special"


def _zip_members(archive: zipfile.ZipFile) -> Iterator[_Member]:
    for info in archive.infolist():
        kind = zip_entry_kind(info)
        link = archive.read(info).decode("utf-8", "replace") if kind == "symlink" else ""
        yield _Member(info.filename, kind, link)


def _tar_members(archive: tarfile.TarFile) -> Iterator[_Member]:
    for info in archive.getmembers():
        if info.issym():
            yield _Member(info.name, "symlink", info.linkname)
        elif info.islnk():
            yield _Member(info.name, "hardlink", info.linkname)
        elif info.isdir():
            yield _Member(info.name, "dir")
        elif info.isfile():
            yield _Member(info.name, "file")
        else:
            yield _Member(info.name, "special")


def stays_inside(relative: str) -> bool:
    """Whether a normalised POSIX path relative to a folder (``posixpath.normpath``) stays inside that folder."""
    return relative != ".." and not relative.startswith("../")


def _check_member(archive: Path, member: _Member) -> str:
    """Return the member's normalised relative path, or raise :class:`UnsafeArchiveError`."""
    name = member.name.replace("\\", "/")
    problem = ""
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        problem = "absolute path"
    elif ".." in name.split("/"):
        problem = "'..' component"
    elif "\x00" in name:
        problem = "NUL byte in name"
    elif posixpath.normpath(name) == "." and member.kind != "dir":
        problem = "empty name"
    elif member.kind in ("special", "hardlink"):
        problem = f"{member.kind} entries are not extracted"
    elif member.kind == "symlink":
        link = member.link.replace("\\", "/")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(posixpath.normpath(name)), link))
        if link.startswith("/") or not stays_inside(target):
            problem = f"symlink to '{member.link}' escapes the target folder"
    if problem:
        raise UnsafeArchiveError(
            f"{archive}: refusing to extract member '{member.name}': {problem}; nothing was extracted"
        )
    return posixpath.normpath(name)


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a zip or tar archive into ``target`` after checking every member; return ``target``.

    Refused (zip-slip and friends): absolute paths, drive letters, ``..`` components, symlinks whose target leaves
    ``target`` (lexically, or physically through links extracted before them), hard links, device files and FIFOs.
    Zip entries without Unix file type bits are files or folders (:func:`zip_entry_kind`). Every member is checked
    before anything is written, and the extraction happens in a temporary folder moved into place at the end, so a
    refused or failing archive leaves ``target`` as it was (not created, if it did not exist). A top-level entry that
    already exists in ``target`` is refused.

    Raises:
        UnsafeArchiveError: a member is refused (the message names it).
        FileExistsError: a top-level entry of the archive already exists in ``target``.
        ValueError: not a zip or tar archive.
    """
    archive, target = Path(archive), Path(target)
    if zipfile.is_zipfile(archive):
        opener, members_of = zipfile.ZipFile, _zip_members
    elif tarfile.is_tarfile(archive):
        opener, members_of = tarfile.open, _tar_members
    else:
        raise ValueError(f"{archive}: not a zip or tar archive")
    with opener(archive) as handle:
        members = [(m, _check_member(archive, m)) for m in members_of(handle)]
        created = not target.exists()
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=target))
        root = staging.resolve()

        def physically_inside(path: Path) -> None:  # links extracted earlier can redirect a lexically safe path
            if path.resolve() != root and root not in path.resolve().parents:
                raise UnsafeArchiveError(
                    f"{archive}: refusing to extract member '{member.name}': through links it "
                    "resolves outside the target folder; nothing was extracted"
                )

        try:
            for member, relative in members:
                out = staging / relative
                if member.kind == "dir":
                    physically_inside(out)
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                physically_inside(out.parent)
                out.parent.mkdir(parents=True, exist_ok=True)
                if member.kind == "symlink":
                    physically_inside(out.parent / member.link)
                    os.symlink(member.link, out)
                    continue
                physically_inside(out)
                source = (
                    handle.open(member.name) if isinstance(handle, zipfile.ZipFile) else handle.extractfile(member.name)
                )
                with source, open(out, "wb") as f:
                    shutil.copyfileobj(source, f)
            for entry in sorted(staging.iterdir()):
                destination = target / entry.name
                if destination.exists() or destination.is_symlink():
                    raise FileExistsError(f"{archive}: {destination} already exists; extract into an empty folder")
            for entry in sorted(staging.iterdir()):
                os.replace(entry, target / entry.name)
            return target
        except BaseException:
            if created:
                shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
