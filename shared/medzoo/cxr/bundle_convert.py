"""Turn a public chest X-ray checkpoint into a complete bundle: weights, matching preprocessing, honest metadata."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..weights import sha256sum
from .convert import load_chexnet_checkpoint, load_xrv_checkpoint
from .transforms import INPUT_PRESETS

__all__ = ["SOURCES", "convert_to_bundle"]

#: Source name -> (checkpoint reader returning a MONAI DenseNet121 state dict, human-readable origin).
SOURCES = {
    "chexnet": (load_chexnet_checkpoint, "arnoweng/CheXNet checkpoint (ImageNet-normalised RGB input)"),
    "xrv": (load_xrv_checkpoint, "torchxrayvision DenseNet121 state dict (1 channel in [-1024, 1024])"),
}
_SKIPPED = ("sample_data", "eval", "models")


def _set_json(path: Path, updates: dict) -> None:
    config = json.loads(path.read_text())
    config.update({k: v for k, v in updates.items() if k in config})
    path.write_text(json.dumps(config, indent=4) + "\n")


def convert_to_bundle(
    source: str, checkpoint: str | os.PathLike, bundle_dir: str | os.PathLike, output_dir: str | os.PathLike
) -> Path:
    """Write a copy of the bundle at ``bundle_dir`` into ``output_dir`` with weights converted from ``checkpoint``.

    The copy's configs get the source's input preset and channel count (``input_preset``, ``in_channels``), and its
    metadata records the source, the weights' sha256 and the
    input format. Nothing is left at ``output_dir`` if any step fails.

    Args:
        source: ``"chexnet"`` or ``"xrv"``.
        checkpoint: the public checkpoint file (read with ``weights_only=True``).
        bundle_dir: the bundle to copy, e.g. ``bundles/cxr14_densenet121_classification``.
        output_dir: the new bundle folder; must not exist yet. Its name becomes the bundle name.

    Raises:
        ValueError: unknown source; FileExistsError: ``output_dir`` exists; conversion errors from the readers.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source '{source}'; choose one of {sorted(SOURCES)}")
    reader, origin = SOURCES[source]
    bundle_dir, output_dir = Path(bundle_dir), Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"{output_dir} already exists; choose a new folder for the converted bundle")
    state_dict = reader(checkpoint)
    preset = INPUT_PRESETS[source]

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        shutil.copytree(bundle_dir, staging, dirs_exist_ok=True, ignore=lambda d, names: [n for n in names if Path(d) == bundle_dir and n in _SKIPPED])
        (staging / "models").mkdir()
        weights = staging / "models" / "model.pt"
        torch.save(state_dict, weights)

        updates = {
            "in_channels": preset["in_channels"],
            "input_preset": source,
        }
        for config in (staging / "configs").glob("*.json"):
            if config.name != "metadata.json":
                _set_json(config, updates)

        meta_file = staging / "configs" / "metadata.json"
        meta = json.loads(meta_file.read_text())
        image = next(iter(meta["network_data_format"]["inputs"].values()))
        image["num_channels"] = preset["in_channels"]
        image["value_range"] = list(preset["value_range"])
        image["channel_def"] = {str(c): "image" for c in range(preset["in_channels"])}
        meta["name"] = f"{meta['name']}, converted from {source}"
        meta["weights"] = {
            "status": "converted",
            "source": f"{origin}: {Path(checkpoint).name} (sha256 {sha256sum(checkpoint)})",
            "description": f"models/model.pt converted by `medzoo convert {source}`; input preset '{source}'.",
            "sha256": sha256sum(weights),
        }
        meta_file.write_text(json.dumps(meta, indent=4) + "\n")
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir
