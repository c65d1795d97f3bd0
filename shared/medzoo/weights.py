"""The one place where the zoo reads weight files: no arbitrary pickles, optional sha256 check."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["sha256sum", "load_weights", "load_state_dict"]


def sha256sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_weights(path: str | os.PathLike, sha256: str | None = None) -> Mapping:
    """Load a checkpoint without executing code from it.

    ``.safetensors`` files are read with safetensors; anything else with ``torch.load(..., weights_only=True)``,
    which refuses pickled objects other than tensors and plain containers.

    Args:
        path: checkpoint file.
        sha256: expected hex digest; when given, the file is checked before it is read.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the digest does not match, or the file is not a safe checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if sha256 is not None:
        actual = sha256sum(path)
        if actual != sha256.lower():
            raise ValueError(f"sha256 mismatch for {path}: expected {sha256}, got {actual}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError or RuntimeError depending on the payload
        raise ValueError(f"{path} is not a safe checkpoint (only tensors and plain containers are accepted): {e}") from e


def load_state_dict(path: str | os.PathLike, key: str | None = None, sha256: str | None = None) -> dict:
    """Load a state dict from ``path``; ``key`` selects a nested entry such as ``"state_dict"`` or ``"network"``."""
    ckpt = load_weights(path, sha256=sha256)
    if key is not None:
        if key not in ckpt:
            raise KeyError(f"{path} has no entry '{key}'; it has: {sorted(ckpt)[:10]}")
        ckpt = ckpt[key]
    if not isinstance(ckpt, Mapping) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors" + (f" under '{key}'" if key else ""))
    return dict(ckpt)
