"""The one place where the zoo reads and writes weight files: no arbitrary pickles; a sha256 given or recorded by the
bundle is checked; deterministic initial weights of a bundle's networks."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch

from .errors import UserError, UserValueError

if TYPE_CHECKING:
    from .zoo import Bundle

__all__ = [
    "WEIGHT_FORMATS",
    "ChecksumError",
    "WeightsFileError",
    "InitialWeights",
    "sha256sum",
    "recorded_sha256",
    "is_safetensors",
    "load_weights",
    "load_state_dict",
    "load_network_weights",
    "save_weights",
    "convert_weights",
    "write_init_weights",
    "write_frozen_init_weights",
    "write_bundle_init_weights",
]

#: Stored formats of bundle weights, by file suffix: a torch state dict (``.pt``) or safetensors.
WEIGHT_FORMATS = {"pt": ".pt", "safetensors": ".safetensors"}


class ChecksumError(UserError, ValueError):
    """A file whose sha256 is not the expected one; the message names the file and both digests."""


class WeightsFileError(UserValueError):
    """A weights file the user gave that cannot be used: empty, not a torch or safetensors file, holding pickled
    objects other than tensors and plain containers, or not a state dict of tensors. One line naming the file."""


#: The next step for a weights file the zoo cannot read.
_WEIGHTS_HINT = (
    "pass a state dict saved with torch.save(model.state_dict(), path) or a .safetensors file (--ckpt_path), or "
    "write initial weights with `medzoo init-weights <bundle>`"
)


def _refusal(error: Exception) -> tuple[bool, str]:
    """Why ``torch.load(..., weights_only=True)`` failed, from its multi-line message: (True, the global it refused to
    unpickle, e.g. ``GLOBAL posix.system``) for a pickle that would import code, else (False, a one-line reason)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    refused = re.search(r"GLOBAL (\S+)", str(error))
    if refused:
        return True, refused.group(1)
    details = [line.rstrip(".") for line in lines if "Unsupported" in line]
    reason = details[0] if details else " ".join(lines)[:120]
    return False, f"{type(error).__name__}: {reason}"


def sha256sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _bundle_root(path: Path) -> Path | None:
    """The nearest folder above ``path`` holding ``configs/metadata.json`` (the bundle the file belongs to)."""
    for folder in path.parents:
        if (folder / "configs" / "metadata.json").is_file():
            return folder
    return None


def recorded_sha256(path: str | os.PathLike) -> tuple[str, str] | None:
    """The sha256 that the bundle holding ``path`` records for it, and where, or ``None`` if it records none.

    Records: ``weights.sha256`` of ``configs/metadata.json`` is the digest of ``models/model.pt`` (written by
    ``medzoo convert`` and ``medzoo import-model``); each ``large_files.yml`` entry with ``hash_type: sha256`` gives
    ``hash_val`` for its ``path``. The bundle is the nearest folder above ``path`` with ``configs/metadata.json``.
    """
    import json

    path = Path(os.path.abspath(path))
    root = _bundle_root(path)
    if root is None:
        return None
    relative = path.relative_to(root).as_posix()
    for name in ("large_files.yml", "large_files.yaml"):
        if (root / name).is_file():
            import yaml  # only bundles that ship a large_files.yml need PyYAML (MONAI's download_large_files does too)

            with open(root / name) as f:
                for entry in (yaml.safe_load(f) or {}).get("large_files") or []:
                    same_file = os.path.normpath(str(entry.get("path", ""))).replace("\\", "/") == relative
                    if same_file and str(entry.get("hash_type", "")).lower() == "sha256" and entry.get("hash_val"):
                        return str(entry["hash_val"]).lower(), f"{root / name} entry '{entry['path']}' (hash_val)"
    weights = json.loads((root / "configs" / "metadata.json").read_text()).get("weights") or {}
    if relative == "models/model.pt" and weights.get("sha256"):
        return str(weights["sha256"]).lower(), f"{root / 'configs' / 'metadata.json'} (weights.sha256)"
    return None


def _check_sha256(path: Path, expected: str | None) -> None:
    """Compare the file's sha256 with ``expected`` (given by the caller) or with the bundle's record of the file."""
    where = "the expected digest passed to load_weights"
    if expected is None:
        recorded = recorded_sha256(path)
        if recorded is None:
            return
        expected, where = recorded
    actual = sha256sum(path)
    if actual != expected.strip().lower():
        raise ChecksumError(
            f"{path}: sha256 mismatch (expected {expected.strip().lower()} from {where}, got {actual}); refusing to "
            "load weights that are not the recorded ones: get the original file again (e.g. re-run medzoo convert or "
            "medzoo download), or if you replaced it on purpose (e.g. by training), update or remove that record"
        )


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether the file is in safetensors layout: a little-endian u64 header length, then a JSON header."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    return head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size


def load_weights(path: str | os.PathLike, sha256: str | None = None) -> Mapping:
    """Load a checkpoint without executing code from it.

    A safetensors file (recognised by its content, whatever its suffix) is read with safetensors; anything else with
    ``torch.load(..., weights_only=True)``, which refuses pickled objects other than tensors and plain containers.

    Args:
        path: checkpoint file.
        sha256: expected hex digest. When ``None``, the digest the file's bundle records for it (see
            :func:`recorded_sha256`), if any. Either way the file is checked before it is read.

    Raises:
        medzoo.errors.UserFileNotFoundError: the file does not exist (the message gives the next step).
        ChecksumError: the digest does not match (a :class:`ValueError`).
        WeightsFileError: the file is empty, not a torch/safetensors file, or holds pickled code (a
            :class:`ValueError`).
    """
    from .errors import UserFileNotFoundError, missing_weights_hint

    path = Path(path)
    if not path.is_file():
        raise UserFileNotFoundError(f"weights file not found: {path}; {missing_weights_hint(path)}")
    _check_sha256(path, sha256)
    if path.stat().st_size == 0:
        raise WeightsFileError(f"{path} is empty (0 bytes), an interrupted download or copy?; {_WEIGHTS_HINT}")
    if path.suffix == ".safetensors" or is_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own SafetensorError on a damaged file
            reason = " ".join(str(e).split())
            raise WeightsFileError(f"{path} is not a readable safetensors file ({reason}); {_WEIGHTS_HINT}") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, KeyError or RuntimeError depending on the payload
        unsafe, reason = _refusal(e)
        if unsafe:
            raise WeightsFileError(
                f"{path} is not a safe checkpoint: it would import {reason}, which can run code (only tensors and "
                f"plain containers are accepted); where you trust its source, {_WEIGHTS_HINT}"
            ) from e
        raise WeightsFileError(
            f"{path} is neither a torch checkpoint nor a safetensors file (torch.load: {reason}); {_WEIGHTS_HINT}"
        ) from e


def load_state_dict(path: str | os.PathLike, key: str | None = None, sha256: str | None = None) -> dict:
    """Load a state dict from ``path``; ``key`` selects a nested entry such as ``"state_dict"`` or ``"network"``."""
    ckpt = load_weights(path, sha256=sha256)
    if key is not None:
        if not isinstance(ckpt, Mapping) or key not in ckpt:
            entries = sorted(map(str, ckpt))[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
            raise WeightsFileError(f"{path} has no entry '{key}' (it has: {entries}); {_WEIGHTS_HINT}")
        ckpt = ckpt[key]
    if not isinstance(ckpt, Mapping) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        where = f" under '{key}'" if key else ""
        raise WeightsFileError(f"{path} does not hold a state dict of tensors{where}; {_WEIGHTS_HINT}")
    return dict(ckpt)


def _mismatch_summary(network: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """One line on how ``state`` differs from ``network``'s state dict: counts and first names of missing,
    unexpected and reshaped tensors."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = [
        f"{len(names)} {what} (first: {names[0]})"
        for names, what in ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
        if names
    ]
    return ", ".join(parts) or "no tensor differs by name or shape"


def load_network_weights(
    network: torch.nn.Module, path: str | os.PathLike, key: str | None = None, sha256: str | None = None
) -> torch.nn.Module:
    """Load the state dict in ``path`` (see :func:`load_state_dict`) into ``network`` strictly; returns ``network``.

    Raises:
        medzoo.errors.UserFileNotFoundError: no file at ``path``.
        medzoo.errors.UserValueError: the tensors do not fit ``network`` (weights of another network or config); the
            message is one line with the counts of missing, unexpected and reshaped tensors.
    """
    from .errors import UserValueError

    state = load_state_dict(path, key=key, sha256=sha256)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UserValueError(
            f"weights in {path} do not fit the {type(network).__name__} network: {_mismatch_summary(network, state)}; "
            "they were made for another network or configuration: pass the weights of this one (--ckpt_path), or the "
            "settings they were trained with"
        ) from e
    return network


def save_weights(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write a state dict atomically, as safetensors if ``path`` ends in ``.safetensors``, else with ``torch.save``.

    Tensors are made contiguous and copied out of shared storage for safetensors, which refuses aliased tensors.
    """
    from .fileio import atomic_path

    path = Path(path)
    if not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path}: only a state dict of tensors can be saved as weights")
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}, str(tmp))
        else:  # through a file object: torch.save would name the archive after the (random) temporary file
            with open(tmp, "wb") as f:
                torch.save(dict(state_dict), f)
    return path


def convert_weights(source: str | os.PathLike, destination: str | os.PathLike, key: str | None = None) -> Path:
    """Convert a weight file between the formats of :data:`WEIGHT_FORMATS` (chosen by ``destination``'s suffix).

    The source is read safely (:func:`load_state_dict`, ``key`` for a nested state dict) and the tensors are
    compared after writing, so the converted file holds exactly the same weights.
    """
    destination = Path(destination)
    if destination.suffix not in WEIGHT_FORMATS.values():
        raise UserValueError(
            f"{destination}: suffix must be one of {sorted(WEIGHT_FORMATS.values())}; name the "
            "converted file with one of them"
        )
    state = load_state_dict(source, key=key)
    save_weights(state, destination)
    written = load_state_dict(destination)
    if written.keys() != state.keys() or not all(torch.equal(written[k], state[k]) for k in state):
        destination.unlink()
        raise RuntimeError(f"{destination}: converted weights differ from {source}; nothing was kept")
    return destination


def write_init_weights(bundle: Bundle, path: str | os.PathLike, seed: int = 0, config: str = "inference.json") -> Path:
    """Write deterministic initial weights of ``network_def`` (same ``seed`` -> same tensors) as a state dict.

    The format follows the suffix of ``path``: ``.safetensors`` or a torch state dict (:func:`save_weights`).
    """
    torch.manual_seed(seed)
    network = bundle.network(config)
    return save_weights(network.state_dict(), path)


def write_frozen_init_weights(bundle: Bundle, seed: int = 0, config: str = "inference.json", **overrides) -> list[Path]:
    """Write deterministic initial weights of the frozen sub-networks a config loads; returns the files written.

    A bundle that runs a second, frozen network (the MI bundle's motion network) declares it as ``<name>_network_def``
    with its weights at ``<name>_checkpoint``, resolved with this bundle's root (``models/<name>_model.pt`` by
    convention, so a package carries them); ``overrides`` reach the config (e.g. ``ckpt_dir``). Bundles without such
    pairs get nothing written.
    """
    parser = bundle.parser(config, **overrides)
    written = []
    for key in parser.config:
        name = key.removesuffix("_network_def")
        if key.endswith("_network_def") and f"{name}_checkpoint" in parser.config:
            torch.manual_seed(seed)
            network = parser.get_parsed_content(key)
            written.append(save_weights(network.state_dict(), parser.get_parsed_content(f"{name}_checkpoint")))
    return written


class InitialWeights(NamedTuple):
    """Files written by :func:`write_bundle_init_weights`: the network's weights, then those of frozen sub-networks."""

    model: Path
    frozen: list[Path]


def write_bundle_init_weights(
    bundle: str | os.PathLike, output: str | os.PathLike | None = None, seed: int = 0, format: str = "pt"
) -> InitialWeights:  # noqa: A002
    """Write deterministic initial (untrained) weights of a bundle's network and of its frozen sub-networks.

    ``bundle`` is a name or a folder; ``output`` defaults to ``models/model<suffix>`` in the bundle, the suffix given
    by ``format`` (a key of :data:`WEIGHT_FORMATS`). Frozen sub-networks the bundle loads (``<name>_network_def`` +
    ``<name>_checkpoint``, e.g. the MI bundle's ``models/motion_model.pt``) get theirs at the paths the config names
    (:func:`write_frozen_init_weights`). The same ``seed`` writes the same tensors.

    Raises:
        medzoo.errors.UserValueError: unknown ``format``.
        medzoo.errors.UserFileNotFoundError: no such bundle.
    """
    from .zoo import Bundle

    if format not in WEIGHT_FORMATS:
        raise UserValueError(f"unknown weights format '{format}'; choose one of {sorted(WEIGHT_FORMATS)} with --format")
    found = Bundle(bundle)
    model = write_init_weights(found, output or found.root / "models" / f"model{WEIGHT_FORMATS[format]}", seed=seed)
    return InitialWeights(model, write_frozen_init_weights(found, seed=seed))
