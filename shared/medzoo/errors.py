"""User mistakes: one line saying what is wrong, with which path, and what to run next; no traceback.

A mistake in how the zoo was called (an unknown bundle, an argument out of its choices, an output that exists already,
an input folder that does not exist or holds no inputs, missing weights, weights of another network, an unreadable
input file) raises a :class:`UserError` in the library code that finds it. Whatever wraps it on the way out (MONAI's
``Failed to evaluate ConfigExpression`` / ``Failed to instantiate``, keeping it as ``__cause__``), the command ends
with ``error: <message>`` on stderr and exit status :data:`USER_ERROR_STATUS`:

- ``python -m monai.bundle run ...``: every bundle config imports :mod:`medzoo`, whose import installs
  :func:`install_excepthook`;
- ``medzoo ...``: :func:`medzoo.cli.main` catches it (:func:`exit_on_user_error`); the commands have no handlers of
  their own.

Any other exception is a bug and keeps its full traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

__all__ = [
    "USER_ERROR_STATUS",
    "UserError",
    "UserFileExistsError",
    "UserFileNotFoundError",
    "UserValueError",
    "bundle_folder",
    "exit_on_user_error",
    "find_user_error",
    "install_excepthook",
    "missing_input_hint",
    "missing_weights_hint",
]

#: Exit status of a command that stopped on a user mistake (``argparse`` uses 2 for usage errors too).
USER_ERROR_STATUS = 2


class UserError(Exception):
    """A mistake by the user: the message is one line naming what is wrong, the path, and the next step."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named (or a default one not made yet) does not exist."""


class UserFileExistsError(UserError, FileExistsError):
    """An output the user named (or its default) exists already and a command would not overwrite it."""


class UserValueError(UserError, ValueError):
    """An input the user gave cannot be used (an empty folder, weights of another network, a corrupt file)."""


def find_user_error(error: BaseException | None) -> UserError | None:
    """The first :class:`UserError` in ``error``'s chain of causes and contexts (``error`` itself included)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _one_line(error: UserError) -> str:
    """``error``'s message on one line. A PyTorch DataLoader worker re-raises it with the worker's traceback as its
    message: the original message is then the last line, after ``<module>.<class>: ``."""
    message = str(error).strip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split(": ", 1)[-1]
    return " ".join(message.split("\n"))


def report(error: UserError) -> None:
    """Print ``error: <message>`` as one line to stderr."""
    print(f"error: {_one_line(error)}", file=sys.stderr, flush=True)


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Turn a :class:`UserError` (anywhere in the chain of the exception raised inside) into one line on stderr and
    ``SystemExit(USER_ERROR_STATUS)``; other exceptions pass unchanged."""
    try:
        yield
    except Exception as e:
        user_error = find_user_error(e)
        if user_error is None:
            raise
        report(user_error)
        raise SystemExit(USER_ERROR_STATUS) from None


def install_excepthook() -> None:
    """Make an uncaught exception whose chain holds a :class:`UserError` print one line and exit with
    :data:`USER_ERROR_STATUS`; any other exception goes to the hook installed before (the traceback). Idempotent."""
    previous = sys.excepthook
    if getattr(previous, "medzoo_user_errors", False):
        return

    def hook(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
        user_error = find_user_error(error)
        if user_error is None:
            previous(kind, error, traceback)
            return
        report(user_error)
        # after the hook the interpreter would exit with 1, the status of a bug: end here with the status of a user
        # mistake, once the log files and standard streams are flushed (no other exit handler runs)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(USER_ERROR_STATUS)

    hook.medzoo_user_errors = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def bundle_folder(path: str | os.PathLike) -> Path | None:
    """The bundle folder (holding ``configs/metadata.json``) that contains ``path``, or None."""
    for folder in Path(os.path.abspath(path)).parents:
        if (folder / "configs" / "metadata.json").is_file():
            return folder
    return None


def _bundle_argument(folder: Path) -> str:
    """How ``medzoo`` commands name the bundle in ``folder``: its name if it is this zoo's, else its path."""
    from .paths import BUNDLES_DIR

    if folder.resolve() == (BUNDLES_DIR / folder.name).resolve():
        return folder.name
    return os.path.relpath(folder)


def missing_input_hint(path: str | os.PathLike) -> str:
    """The next step for an input (folder, file or datalist) that does not exist at ``path``.

    Inside a bundle folder (its default ``sample_data``), the commands that write the bundle's sample data;
    elsewhere, to check the path.
    """
    folder = bundle_folder(path)
    if folder is None:
        return "check the path, or pass another one with --input (a folder, a file or a datalist JSON)"
    config = os.path.relpath(folder / "configs" / "sample_data.json")
    return (
        f"write the bundle's synthetic sample data with `medzoo sample-data {_bundle_argument(folder)}` (or "
        f"`python -m monai.bundle run --config_file {config}`), or pass your own with --input"
    )


def missing_weights_hint(path: str | os.PathLike) -> str:
    """The next step for a weights file that does not exist at ``path``: inside a bundle folder (its ``models/``),
    the commands that write initial weights or train; elsewhere, to check the path."""
    folder = bundle_folder(path)
    if folder is None:
        return "check the path (in a bundle run: --ckpt_path, or the config id naming this file)"
    name = _bundle_argument(folder)
    config = os.path.relpath(folder / "configs" / "train.json")
    return (
        f"write initial (untrained) weights with `medzoo init-weights {name}`, train with "
        f"`python -m monai.bundle run --config_file {config}`, or pass a weights file with --ckpt_path"
    )
