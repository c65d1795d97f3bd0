"""Locating bundles on disk, so a bundle runs from its own folder, from the repository root, or unpacked anywhere."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["REPO_ROOT", "BUNDLES_DIR", "bundle_root", "bundle_names"]

#: The checkout this package was imported from (meaningful for an editable install of the repository).
REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES_DIR = REPO_ROOT / "bundles"


def _is_bundle(folder: Path, name: str | None = None) -> bool:
    return (name is None or folder.name == name) and (folder / "configs" / "metadata.json").is_file()


def _running_bundle() -> Path | None:
    """The bundle folder of the MONAI ``ConfigWorkflow`` whose config is being evaluated further up the call stack.

    MONAI derives it from the config file's location (the parent of ``configs/``) and puts it on ``sys.path`` when
    the workflow's ``run`` starts, which is what makes a bundle's vendored ``medzoo/`` importable in a package.
    """
    from monai.bundle import ConfigWorkflow

    frame = sys._getframe(1)
    while frame is not None:
        workflow = frame.f_locals.get("self")
        if isinstance(workflow, ConfigWorkflow):
            configs = Path(workflow.config_root_path)
            return configs.parent if configs.name == "configs" else configs
        frame = frame.f_back
    return None


def _relative_to_cwd(folder: Path) -> str:
    cwd = Path.cwd()
    folder = folder.resolve()
    return os.path.relpath(folder) if folder.is_relative_to(cwd) else str(folder)


def bundle_root(name: str | None = None) -> str:
    """Return the folder of a bundle as seen from the current working directory.

    Without ``name``: the bundle whose config is running, so a config needs neither its own name nor ``medzoo``
    installed (``"bundle_root": "$medzoo.paths.bundle_root()"``): the folder MONAI's ``ConfigWorkflow`` takes
    from the config file (``<bundle>/configs/x.json`` -> ``<bundle>``), from any working directory; else the working
    directory if it is a bundle folder (e.g. MONAI's ``ckpt_export`` run inside it). ``--bundle_root`` on the command
    line still wins.

    With ``name`` (a config naming another bundle, e.g. a distillation teacher): the working directory itself
    (``cd bundles/<name>``), ``./bundles/<name>`` (the repository root), or the repository this package belongs to.

    Raises:
        FileNotFoundError: no such bundle in any of those places.
    """
    cwd = Path.cwd()
    if name is None:
        running = _running_bundle()
        for candidate in ([running] if running is not None else []) + [cwd]:
            if _is_bundle(candidate):
                return _relative_to_cwd(candidate)
        raise FileNotFoundError(
            f"no bundle folder found: run a config with 'python -m monai.bundle run --config_file <bundle>/configs/"
            f"<config>.json' or from inside the bundle folder, or pass --bundle_root <folder> (working directory {cwd})"
        )
    for candidate in (cwd, cwd / "bundles" / name, BUNDLES_DIR / name):
        if _is_bundle(candidate, name):
            return _relative_to_cwd(candidate)
    raise FileNotFoundError(
        f"bundle '{name}' not found: run from its folder or from the repository root, or pass --bundle_root <folder>"
    )


def bundle_names(bundles_dir: str | os.PathLike = BUNDLES_DIR) -> list[str]:
    """Names of all bundles under ``bundles_dir``, sorted."""
    root = Path(bundles_dir)
    return sorted(p.name for p in root.iterdir() if (p / "configs" / "metadata.json").is_file())
