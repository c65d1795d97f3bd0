"""Locating bundles on disk, so a bundle runs both from its own folder and from the repository root."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "BUNDLES_DIR", "bundle_root", "bundle_names"]

#: The checkout this package was imported from (meaningful for an editable install of the repository).
REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES_DIR = REPO_ROOT / "bundles"


def _is_bundle(folder: Path, name: str) -> bool:
    return folder.name == name and (folder / "configs" / "metadata.json").is_file()


def bundle_root(name: str) -> str:
    """Return the folder of bundle ``name`` as seen from the current working directory.

    Looked up, in order: the working directory itself (``cd bundles/<name>``), ``./bundles/<name>`` (the repository
    root), and the repository this package belongs to. Bundle configs use it as
    ``"bundle_root": "$medzoo.paths.bundle_root('<name>')"``; ``--bundle_root`` on the command line still wins.

    Raises:
        FileNotFoundError: no such bundle in any of those places.
    """
    cwd = Path.cwd()
    for candidate in (cwd, cwd / "bundles" / name, BUNDLES_DIR / name):
        if _is_bundle(candidate, name):
            return os.path.relpath(candidate) if candidate.is_relative_to(cwd) else str(candidate)
    raise FileNotFoundError(
        f"bundle '{name}' not found: run from its folder or from the repository root, or pass --bundle_root <folder>"
    )


def bundle_names(bundles_dir: str | os.PathLike = BUNDLES_DIR) -> list[str]:
    """Names of all bundles under ``bundles_dir``, sorted."""
    root = Path(bundles_dir)
    return sorted(p.name for p in root.iterdir() if (p / "configs" / "metadata.json").is_file())
