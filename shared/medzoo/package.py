"""Self-contained, reproducible bundle packages (extracted with :func:`medzoo.archives.safe_extract`).

A package is a zip holding one top-level folder named after the bundle (the MONAI model-zoo layout that
``monai.bundle.download`` extracts): the bundle's files, without generated data (``sample_data/``, ``eval/``,
``runs/``, caches), plus a copy of the shared layer ``medzoo/`` so that, unpacked anywhere,

    cd <bundle_name> && python -m monai.bundle run --config_file configs/inference.json

runs with only MONAI and the bundle's listed packages installed (``python -m`` puts the working directory, the bundle
folder, first on ``sys.path``, and MONAI adds the bundle folder to it as well).

Weights: a package holds only what inference and fine-tuning read, :func:`declared_weights`: ``models/model.pt``,
``models/model.safetensors`` and the frozen sub-network weights the inference config declares (``<name>_checkpoint``
beside ``<name>_network_def``, e.g. ``models/motion_model.pt``). Every other file in ``models/`` (except its
``README.md``) and every other weight file in the bundle is left out and listed in the package record's
``left_out``: the resume checkpoint ``TrainingCheckpoint`` writes (``models/checkpoint.pt``, with the optimizer
state), exports and compressed variants with their reports (``model.onnx``, ``model.ts``, ``*.json``), starting
checkpoints for training (e.g. ``simclr_pretrained.pt``).

The zip is reproducible: entries sorted by name, timestamps fixed to 1980-01-01, permissions fixed to 0644, no
directory entries or extra fields; the same files give byte-identical packages (so a sha256 identifies a release).
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .errors import UserError
from .fileio import atomic_path
from .weights import sha256sum
from .zoo import INDEX_FILE, Bundle, read_index, record

__all__ = [
    "EXCLUDED_DIRS",
    "ReleaseError",
    "declared_weights",
    "folder_files",
    "package_bundle",
    "package_files",
    "package_summary",
    "recorded_package",
    "write_package",
    "write_zip",
]

#: Folders never packaged: generated data and outputs, caches, VCS metadata.
EXCLUDED_DIRS = frozenset(
    {"sample_data", "eval", "runs", "__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".git", ".cache"}
)
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".tmp")
EXCLUDED_NAMES = frozenset({".DS_Store"})
#: Suffixes of weight files (network parameters, exported or compressed models, training checkpoints).
WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".ts", ".onnx")
#: The bundle's own network weights, relative to the bundle root: ``ckpt_path`` and its safetensors form.
BUNDLE_WEIGHTS = ("models/model.pt", "models/model.safetensors")
MODELS_DIR = "models"
VENDORED_PACKAGE = "medzoo"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o644


class ReleaseError(UserError, ValueError):
    """A package or release that cannot be made or accepted as asked; the message says what is wrong and what to do."""


def _walk(root: Path, arc_prefix: PurePosixPath) -> list[tuple[str, Path]]:
    """Packaged files under ``root`` as ``(name in the zip, path)``; a symbolic link anywhere packaged is an error."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                raise ReleaseError(f"{path} is a symbolic link; a package holds regular files only")
            if name in filenames and not (name in EXCLUDED_NAMES or name.endswith(EXCLUDED_SUFFIXES)):
                files.append((str(arc_prefix / path.relative_to(root).as_posix()), path))
    return files


def declared_weights(bundle: Bundle) -> list[str]:
    """Weight files a package of ``bundle`` may carry, relative to its root: :data:`BUNDLE_WEIGHTS` plus the frozen
    sub-network weights ``configs/inference.json`` declares (``<name>_checkpoint`` beside ``<name>_network_def``)
    inside the bundle folder. Whether they exist is not checked."""
    declared = set(BUNDLE_WEIGHTS)
    if "inference.json" in bundle.configs:
        parser = bundle.parser("inference.json")
        for key in parser.config:
            name = key.removesuffix("_network_def")
            if key.endswith("_network_def") and f"{name}_checkpoint" in parser.config:
                path = Path(parser.get_parsed_content(f"{name}_checkpoint")).resolve()
                if path.is_relative_to(bundle.root.resolve()):
                    declared.add(path.relative_to(bundle.root.resolve()).as_posix())
    return sorted(declared)


def _split_weights(bundle: Bundle) -> tuple[list[tuple[str, Path]], list[str]]:
    """The bundle's own files to package as ``(name in the zip, path)``, and the ones left out (relative paths):
    files in ``models/`` other than its README.md, and weight files anywhere, unless :func:`declared_weights`."""
    declared = set(declared_weights(bundle))
    kept, left_out = [], []
    for arcname, path in _walk(bundle.root, PurePosixPath(bundle.name)):
        relative = arcname.split("/", 1)[1]
        in_models = relative.startswith(f"{MODELS_DIR}/") and relative != f"{MODELS_DIR}/README.md"
        if (in_models or relative.endswith(WEIGHT_SUFFIXES)) and relative not in declared:
            left_out.append(relative)
        else:
            kept.append((arcname, path))
    return kept, sorted(left_out)


def package_files(bundle: Bundle) -> list[tuple[str, Path]]:
    """``(name in the zip, file on disk)`` for every packaged file, sorted by name.

    The bundle folder (minus :data:`EXCLUDED_DIRS` and the weights that are not :func:`declared_weights`) goes under
    ``<bundle_name>/``, the shared layer under ``<bundle_name>/medzoo/``.
    """
    if (bundle.root / VENDORED_PACKAGE).exists():
        raise ReleaseError(
            f"{bundle.name}: has its own '{VENDORED_PACKAGE}' folder, which the vendored copy would replace; rename it"
        )
    top = PurePosixPath(bundle.name)
    shared = Path(__file__).resolve().parent
    return sorted(_split_weights(bundle)[0] + _walk(shared, top / VENDORED_PACKAGE))


def write_zip(entries: list[tuple[str, Path]], output: str | os.PathLike) -> Path:
    """Write ``(name in the zip, file on disk)`` entries, sorted, as a reproducible zip to ``output`` (atomically)."""
    output = Path(output)
    with atomic_path(output) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for arcname, path in sorted(entries):
            info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr carries the permission bits
            info.external_attr = (stat.S_IFREG | _FILE_MODE) << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    return output


def write_package(bundle: Bundle, output: str | os.PathLike) -> Path:
    """Write the reproducible zip of ``bundle`` (with the vendored shared layer) to ``output`` and return its path."""
    return write_zip(package_files(bundle), output)


def folder_files(folder: str | os.PathLike, top: str, exclude: tuple[str, ...] = ()) -> list[tuple[str, Path]]:
    """The entries :func:`write_zip` needs to re-create the package of an unpacked bundle ``folder`` under ``top/``.

    ``exclude`` lists names relative to ``folder`` to leave out (e.g. files a download adds).
    """
    return [(a, p) for a, p in _walk(Path(folder), PurePosixPath(top)) if a.split("/", 1)[1] not in exclude]


def package_bundle(
    name: str,
    output_dir: str | os.PathLike = "dist",
    index_file: str | os.PathLike | None = INDEX_FILE,
    bundles_dir: str | os.PathLike | None = None,
    force: bool = False,
) -> dict:
    """Package a bundle into ``output_dir/<name>_v<version>.zip`` and record its sha256 in the index.

    Args:
        name: bundle name (or folder).
        output_dir: where the zip goes.
        index_file: the index that receives ``packages[<version>] = {file, sha256, bytes, weights}``; ``None`` to
            record nothing (e.g. for a bundle outside the zoo).
        bundles_dir: the zoo the bundle belongs to (default: this repository's ``bundles/``).
        force: replace a different sha256 already recorded for this version (only for a version never published).

    Raises:
        ReleaseError: this version was packaged before with other content (a released version is immutable).

    Returns:
        the package record, plus ``path`` and ``left_out`` (bundle files not packaged, see :func:`declared_weights`).
    """
    bundle = Bundle(name) if bundles_dir is None else Bundle(name, bundles_dir)
    version = bundle.metadata["version"]
    files = package_files(bundle)
    path = write_zip(files, Path(output_dir) / f"{bundle.name}_v{version}.zip")
    packaged = {a.split("/", 1)[1] for a, _ in files}
    weights = [w for w in declared_weights(bundle) if w in packaged]
    entry = {"file": path.name, "sha256": sha256sum(path), "bytes": path.stat().st_size, "weights": weights}
    if index_file is not None:
        previous = recorded_package(bundle.name, version, index_file)
        if previous and previous["sha256"] != entry["sha256"] and not force:
            path.unlink()
            raise ReleaseError(
                f"{bundle.name} v{version} was packaged before with sha256 {previous['sha256']}; this build differs "
                f"({entry['sha256']}): bump the version in metadata.json (and its changelog), or repackage with "
                "--force (force=True) if that version was never published"
            )
        kwargs = {} if bundles_dir is None else {"bundles_dir": bundles_dir}
        record(bundle.name, "packages", {version: entry}, index_file=index_file, **kwargs)
    return {**entry, "path": str(path), "left_out": _split_weights(bundle)[1]}


def package_summary(result: dict) -> str:
    """What :func:`package_bundle` made, for a person: the zip, its sha256, size and weights, then the files left out
    (if any) on a second line."""
    lines = [
        f"{result['path']}  sha256 {result['sha256']}  ({result['bytes']} bytes, weights: "
        f"{result['weights'] or 'none'})"
    ]
    if result["left_out"]:
        lines.append(f"left out (not needed for inference or fine-tuning): {', '.join(result['left_out'])}")
    return "\n".join(lines)


def recorded_package(name: str, version: str, index_file: str | os.PathLike = INDEX_FILE) -> dict | None:
    """The package record of ``name`` at ``version`` in the index (``file``, ``sha256``, ...), or ``None``."""
    entry = next((e for e in read_index(index_file)["bundles"] if e["name"] == name), {})
    return (entry.get("packages") or {}).get(version)
