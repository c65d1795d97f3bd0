"""Atomic file output: a reader never sees a half-written file, a failure never leaves one behind."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "publish_report", "write_report"]


def _new_empty_file(folder: Path, prefix: str, suffix: str) -> Path:
    """Create a new empty file with a random name in ``folder``, with the permissions of any new file (0o666 less the
    process's umask; ``tempfile.mkstemp`` would make it 0o600, and the rename would hand that to the output)."""
    while True:
        candidate = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return candidate
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    The output gets the permissions of any new file (0o666 less the umask), whatever ``path`` had before.

    Example::

        with atomic_path("out/predictions.csv") as tmp:
            df.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_empty_file(path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_report(output: str | os.PathLike, report: dict, table: str) -> None:
    """Write a measurement's ``report`` to ``<output>.json`` and its Markdown ``table`` to ``<output>.md``, atomically."""
    output = Path(output)
    atomic_write_text(output.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(output.with_suffix(".md"), table)


def publish_report(output: str | os.PathLike | None, report: dict, table: str) -> None:
    """Print a measurement's Markdown ``table``; with ``output`` (a path without suffix) also :func:`write_report` it."""
    print(table)
    if output:
        write_report(output, report, table)
