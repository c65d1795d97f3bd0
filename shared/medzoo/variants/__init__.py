"""Bundles written from a declarative description (variants of one model), and the command that writes them.

:mod:`medzoo.variants.hybridmednet` describes the HybridMedNet bundles. ``python -m medzoo.variants`` (or
:func:`write_variants`) writes them under ``bundles/``, or under another folder, and ``--check True`` lists the
bundle files that differ from what the description gives.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..fileio import atomic_write_text
from ..paths import BUNDLES_DIR

__all__ = ["stale_files", "write_variants"]


def _rendered(bundles_dir: Path) -> dict[Path, str]:
    """Relative path (``<bundle>/<file>``) -> text of every generated file, from the description and ``bundles_dir``."""
    from . import hybridmednet

    return {
        Path(name) / relative: text
        for name in hybridmednet.BUNDLES
        for relative, text in hybridmednet.render(name, bundles_dir=bundles_dir).items()
    }


def write_variants(
    output_dir: str | os.PathLike = BUNDLES_DIR, bundles_dir: str | os.PathLike = BUNDLES_DIR
) -> list[Path]:
    """Write every generated bundle file under ``output_dir`` and return the paths written.

    The template bundle, the recorded ``eval_metrics`` and the measurement reports are read from ``bundles_dir``
    (the zoo's ``bundles/``), so writing into another folder gives the same files as writing in place.
    """
    written = []
    for relative, text in _rendered(Path(bundles_dir)).items():
        path = Path(output_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        written.append(path)
    return written


def stale_files(bundles_dir: str | os.PathLike = BUNDLES_DIR) -> list[Path]:
    """Generated files under ``bundles_dir`` that are missing or differ from what the description gives."""
    return [
        Path(bundles_dir) / relative
        for relative, text in _rendered(Path(bundles_dir)).items()
        if not (Path(bundles_dir) / relative).is_file() or (Path(bundles_dir) / relative).read_text() != text
    ]
