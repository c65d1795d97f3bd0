"""Downloads that are used only if their sha256 matches.

- :func:`verify_sha256` / :func:`fetch`: a downloaded file is used only if its sha256 matches; on a mismatch it is
  deleted and a :class:`~medzoo.weights.ChecksumError` names the file and both digests.
- :func:`fetch_large_files`: the safe counterpart of ``monai.bundle download_large_files`` for a bundle's
  ``large_files.yml``.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import urllib.request
from pathlib import Path

from .archives import stays_inside
from .fileio import atomic_path
from .weights import ChecksumError, sha256sum

__all__ = ["fetch", "fetch_large_files", "verify_sha256"]


def verify_sha256(path: str | os.PathLike, expected: str) -> Path:
    """Check the sha256 of ``path``; on a mismatch delete the file and raise :class:`ChecksumError`.

    Returns the path, so a caller can write ``use(verify_sha256(p, digest))``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found, cannot check its sha256")
    expected = expected.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ValueError(f"{path}: expected sha256 '{expected}' is not 64 hex digits")
    actual = sha256sum(path)
    if actual != expected:
        path.unlink()
        raise ChecksumError(f"{path}: sha256 mismatch (expected {expected}, got {actual}); the file was deleted")
    return path


def fetch(url: str, destination: str | os.PathLike, sha256: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination`` and keep it only if its sha256 is ``sha256``.

    The download goes to a temporary file beside ``destination``, is checked, then renamed: ``destination`` never
    holds a partial or unverified file. An existing ``destination`` with the right digest is reused.

    Raises:
        ChecksumError: the downloaded file has another digest (nothing is kept).
    """
    destination = Path(destination)
    if destination.is_file():
        with contextlib.suppress(ChecksumError):
            return verify_sha256(destination, sha256)  # a stale or corrupt copy is deleted and downloaded again
    with atomic_path(destination) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
        try:
            verify_sha256(tmp, sha256)
        except ChecksumError as e:
            raise ChecksumError(f"{url} -> {destination}: {e}") from None
    return destination


def fetch_large_files(bundle_root: str | os.PathLike, timeout: float = 60.0) -> list[Path]:
    """Download every entry of the bundle's ``large_files.yml`` with :func:`fetch`, checking its sha256.

    The safe counterpart of ``monai.bundle download_large_files``: an entry must give ``hash_type: sha256`` and
    ``hash_val``; its ``path`` must stay inside the bundle. Returns the local paths.

    Raises:
        ValueError: an entry without a sha256, or whose path leaves the bundle folder.
        ChecksumError: a download whose digest differs (it is not kept).
    """
    from .zoo import Bundle

    bundle = Bundle(bundle_root)
    paths = []
    for entry in bundle.large_files:
        relative = posixpath.normpath(str(entry.get("path", "")).replace("\\", "/"))
        if relative in ("", ".") or relative.startswith("/") or not stays_inside(relative):
            raise ValueError(f"{bundle.name}: large_files.yml path '{entry.get('path')}' leaves the bundle folder")
        if str(entry.get("hash_type", "")).lower() != "sha256" or not entry.get("hash_val"):
            raise ValueError(f"{bundle.name}: large_files.yml entry '{relative}' needs hash_type sha256 and hash_val")
        paths.append(fetch(entry["url"], bundle.root / relative, entry["hash_val"], timeout=timeout))
    return paths
