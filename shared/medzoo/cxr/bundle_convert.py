"""Turn a public chest X-ray checkpoint into a complete bundle: weights, the source's own preprocessing and calibration,
honest metadata, and a parity report measured at conversion time.

A converted bundle is a copy of the DenseNet-121 bundle whose configs read images the way the source does
(:mod:`medzoo.cxr.source_preprocess`) and, for torchxrayvision weights with operating points, calibrate the
probabilities as the source does. Before the bundle is kept, the converter runs the source model through the source's
own pipeline and the new bundle's ``inference.json`` on the same generated PNG files (square and non-square 8-bit,
RGB, 16-bit) and writes the differences into ``docs/parity.json`` and the card; a difference above
:data:`medzoo.cxr.parity.PARITY_BOUND` is an error and nothing is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from ..errors import UserFileExistsError
from ..weights import sha256sum
from .convert import ConversionError, load_chexnet_checkpoint, load_xrv_checkpoint, read_state_dict
from .labels import XRV_LABELS
from .parity import PARITY_BOUND, measure_parity
from .transforms import INPUT_PRESETS

__all__ = ["SOURCES", "Source", "convert_to_bundle"]

#: Largest accepted absolute difference between a probability of the converted bundle and of the source pipeline.
_SKIPPED = ("sample_data", "eval", "models")


@dataclass(frozen=True)
class Source:
    """What a source needs: its origin, the reference pipeline in words, the config ids its bundle sets."""

    origin: str
    pipeline: str
    loader: dict
    packages: tuple[str, ...]
    extra_ids: dict = field(default_factory=dict)


_LABEL_TYPE = {"_target_": "EnsureTyped", "keys": "label", "dtype": "$torch.float32"}

SOURCES: dict[str, Source] = {
    "chexnet": Source(
        origin="arnoweng/CheXNet checkpoint",
        pipeline=(
            "arnoweng/CheXNet's test pipeline without its ten-crop averaging: `PIL.Image.open(path).convert('RGB')`, "
            "torchvision `Resize(256)` (bilinear, shorter side to 256), `CenterCrop(224)` (the centre crop of its "
            "`TenCrop(224)`), `ToTensor()`, `Normalize` with ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, "
            "0.224, 0.225); a 16-bit image is first brought to 8 bits by `round(v / 257)` (Pillow's "
            "`convert('RGB')` would clip it at 255); DICOM is read as the zoo reads it (windowed to its own range), "
            "rounded to 8 bits"
        ),
        loader={
            "_target_": "medzoo.cxr.source_preprocess.LoadCheXNetImaged",
            "keys": "image",
            "resize": "$@spatial_size[0] * 256 // 224",
            "crop": "$@spatial_size[0]",
        },
        packages=("torchvision", "pillow"),
    ),
    "xrv": Source(
        origin="torchxrayvision DenseNet121 state dict",
        pipeline=(
            "torchxrayvision's README recipe: `skimage.io.imread(path)`, `xrv.datasets.normalize(img, 255)` (then "
            "`img.mean(2)` for a colour image, alpha dropped first), `xrv.datasets.XRayCenterCrop()` (centred square "
            "of the shorter side), `xrv.datasets.XRayResizer(224)` (`skimage.transform.resize(..., mode='constant', "
            "preserve_range=True)`: bilinear with Gaussian anti-aliasing of sigma (factor - 1) / 2); a 16-bit PNG is "
            "normalised with `maxval=65535`, as torchxrayvision's loaders of 16-bit PNG data sets do, and DICOM as "
            "`xrv.utils.read_xray_dcm`; then `xrv.models.DenseNet`, whose pretrained weights calibrate the sigmoid "
            "outputs with `op_norm` and their `op_threshs`"
        ),
        loader={"_target_": "medzoo.cxr.source_preprocess.LoadXRVImaged", "keys": "image", "size": "$@spatial_size[0]"},
        packages=("scikit-image",),
    ),
}


def _set_id(config: dict, id_path: str, value: object, config_name: str) -> None:
    """Set ``config[a][b]...`` for the MONAI id ``a#b#...``; the parent must exist (list indices allowed)."""
    *parents, last = id_path.split("#")
    node = config
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.get(part)
        if node is None:
            raise KeyError(
                f"configs/{config_name} has no '{id_path}': the base bundle does not have the layout the "
                "converter expects"
            )
    node[int(last) if isinstance(node, list) else last] = value


def _config_updates(source: str, op_threshs: list[float | None] | None) -> dict[str, dict[str, object]]:
    """Config file -> {MONAI id: value} that give a copy of the DenseNet-121 bundle the source's pipeline."""
    loader = SOURCES[source].loader
    inference: dict[str, object] = {"preprocessing#transforms": [loader]}
    if op_threshs is not None:
        inference["op_threshs"] = op_threshs
        inference["postprocessing#transforms"] = [
            {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
            {
                "_target_": "medzoo.cxr.source_preprocess.OperatingPointNormd",
                "keys": "pred",
                "op_threshs": "@op_threshs",
            },
        ]
    return {
        "inference.json": inference,
        # training and evaluation read images as the source does too; the intensity step is in the loader
        "train.json": {
            "load_and_resize": [loader, _LABEL_TYPE],
            "intensity": {"_target_": "Identityd", "keys": "image"},
        },
    }


def _package_versions(names: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed at conversion"
    return found


# ---------------------------------------------------------------------------------------------- parity check


def _card(source: str, output_name: str, base_card: str, report: dict, calibration: str) -> str:
    """The converted bundle's card: what it reproduces and the measured parity, then the base bundle's card."""
    spec = SOURCES[source]
    if report["status"] == "measured":
        probs = report["source_probabilities"]
        rows = "\n".join(
            f"| {kind} | `{report['files'][kind]}` | {diff:.2e} |"
            for kind, diff in report["max_abs_probability_difference"].items()
        )
        parity = (
            f"Measured by `medzoo convert` when this bundle was written ({report['reference']}): the source model "
            f"through the pipeline above and this bundle's `configs/inference.json` on the same generated PNG files "
            f"(`docs/parity.json`); maximum absolute difference of the 14 probabilities per file (bound "
            f"{report['bound']:g}):\n\n| file kind | file | max abs difference |\n|---|---|---|\n{rows}\n\n"
            f"The source's probabilities on these files range from {probs['min']:.4f} to {probs['max']:.4f} (std "
            f"{probs['std']:.4f}); a check on saturated outputs (all near 0 or 1) would say little. DICOM inputs "
            "follow the rule above but were not part of the check."
        )
    else:
        parity = f"Parity {report['status']}; nothing is claimed about it."
    return (
        f"# {output_name}: {spec.origin} converted to a MONAI bundle\n\n"
        "> **Research model, not for clinical use.** Converted third-party weights; not a medical device, not "
        "validated on patients.\n\n"
        f"## Conversion\n`models/model.pt` was converted by `medzoo convert {source}` from the {spec.origin} recorded "
        "in `configs/metadata.json` (`weights`, with both files' sha256).\n\n"
        f"### Preprocessing reproduced\n{spec.pipeline}. `configs/inference.json` reads images with "
        f"`{spec.loader['_target_']}`; `configs/train.json` (and `evaluate.json`) read them the same way.\n\n"
        f"### Calibration\n{calibration}\n\n"
        f"### Parity with the source\n{parity}\n\n"
        "The rest of this card is the card of the bundle this one was copied from; its 'Weights' section describes "
        "that bundle, not these converted weights.\n\n---\n\n" + base_card
    )


def convert_to_bundle(
    source: str,
    checkpoint: str | os.PathLike,
    bundle_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    drop_op_threshs: bool = False,
    source_labels: list[str] | None = None,
) -> Path:
    """Write a copy of the bundle at ``bundle_dir`` into ``output_dir`` with weights converted from ``checkpoint``.

    The copy's configs read images with the source's loader (:data:`SOURCES`), get the source's channel count
    (``in_channels``) and input preset name, and, for torchxrayvision weights with ``op_threshs``, calibrate the
    probabilities with them after the sigmoid (ids ``op_threshs`` and ``postprocessing`` of ``inference.json``). Its
    metadata records the source, both sha256, the reproduced
    pipeline, the calibration and the parity report; ``docs/README.md`` states them. Nothing is left at
    ``output_dir`` if any step fails.

    Args:
        source: ``"chexnet"`` or ``"xrv"``.
        checkpoint: the public checkpoint file (read with ``weights_only=True``).
        bundle_dir: the bundle to copy, e.g. ``bundles/cxr14_densenet121_classification``.
        output_dir: the new bundle folder; must not exist yet. Its name becomes the bundle name.
        drop_op_threshs: torchxrayvision only: leave out the calibration, so outputs are plain sigmoid probabilities
            (same ranking per label, so the same AUROC, but a label's 0.5 no longer is its operating point).
        source_labels: torchxrayvision only: ``model.targets`` of the weights (default the 18 of ``XRV_LABELS``).

    Raises:
        ConversionError: unknown source, option not valid for the source (or ``drop_op_threshs`` not a bool), or a
        checkpoint that cannot be converted; medzoo.errors.UserFileExistsError: ``output_dir`` exists;
        medzoo.errors.UserFileNotFoundError: no checkpoint file; RuntimeError: the converted
        bundle does not reproduce the source within :data:`PARITY_BOUND` (a bug).
    """
    if source not in SOURCES:
        raise ConversionError(f"unknown source '{source}'; choose one of {sorted(SOURCES)}")
    if not isinstance(drop_op_threshs, bool):
        raise ConversionError(f"--drop_op_threshs takes True or False, got {drop_op_threshs!r}")
    if source != "xrv" and (drop_op_threshs or source_labels is not None):
        raise ConversionError(
            "--drop_op_threshs and --source_labels apply to torchxrayvision weights (source xrv) only"
        )
    spec = SOURCES[source]
    bundle_dir, output_dir = Path(bundle_dir), Path(output_dir)
    if output_dir.exists():
        raise UserFileExistsError(f"{output_dir} already exists; choose a new folder for the converted bundle")
    source_labels = list(source_labels or XRV_LABELS)
    if source == "xrv":
        state_dict, op_threshs = load_xrv_checkpoint(checkpoint, source_labels=source_labels)
    else:
        state_dict, op_threshs = load_chexnet_checkpoint(checkpoint), None
    raw = read_state_dict(checkpoint, None)  # the source's own layout, for the parity check's reference model
    preset = INPUT_PRESETS[source]
    if op_threshs is None:
        calibration = (
            "None: the source weights carry no operating points (`op_threshs`); outputs are sigmoid "
            "probabilities, as the source model's."
        )
    elif drop_op_threshs:
        calibration = (
            "Dropped at conversion (`--drop_op_threshs True`): outputs are plain sigmoid probabilities, not the "
            "calibrated ones torchxrayvision's pretrained model gives. Per label the ranking, hence the AUROC, is the "
            "same, but 0.5 no longer is the label's operating point and every probability differs from "
            "torchxrayvision's. The dropped operating points are recorded in `configs/metadata.json` "
            "(`weights.op_threshs`)."
        )
        raw = {k: v for k, v in raw.items() if k.removeprefix("module.") != "op_threshs"}
    else:
        calibration = (
            "torchxrayvision's `op_norm` with the weights' operating points (`op_threshs` of `configs/inference.json`, "
            "in label order, also in `configs/metadata.json`): after the sigmoid, p < t becomes p / (2t), otherwise "
            "1 - (1 - p) / (2 (1 - t)), so each label's operating point maps to 0.5; a label without one outputs 0.5."
        )

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        shutil.copytree(
            bundle_dir,
            staging,
            dirs_exist_ok=True,
            ignore=lambda d, names: [n for n in names if Path(d) == bundle_dir and n in _SKIPPED],
        )
        (staging / "models").mkdir()
        weights = staging / "models" / "model.pt"
        torch.save(state_dict, weights)

        common = {
            "in_channels": preset["in_channels"],
            "input_preset": source,
        }
        updates = _config_updates(source, None if drop_op_threshs else op_threshs)
        for config in (staging / "configs").glob("*.json"):
            if config.name == "metadata.json":
                continue
            content = json.loads(config.read_text())
            content.update({k: v for k, v in common.items() if k in content})
            for id_path, value in updates.get(config.name, {}).items():
                _set_id(content, id_path, value, config.name)
            config.write_text(json.dumps(content, indent=4) + "\n")

        with tempfile.TemporaryDirectory(prefix="parity.", dir=staging.parent) as workdir:
            report = measure_parity(source, staging, raw, source_labels, Path(workdir))
        if report["status"] == "measured" and report["max_abs_probability_difference_all"] > PARITY_BOUND:
            raise RuntimeError(
                f"the converted bundle does not reproduce the {source} pipeline: probabilities differ "
                f"by up to {report['max_abs_probability_difference_all']:.3g} (bound {PARITY_BOUND}) "
                f"on {report['max_abs_probability_difference']}; this is a bug of the converter"
            )
        (staging / "docs" / "parity.json").write_text(json.dumps(report, indent=4) + "\n")

        meta_file = staging / "configs" / "metadata.json"
        meta = json.loads(meta_file.read_text())
        image = next(iter(meta["network_data_format"]["inputs"].values()))
        image["num_channels"] = preset["in_channels"]
        image["value_range"] = list(preset["value_range"])
        image["channel_def"] = {str(c): "image" for c in range(preset["in_channels"])}
        meta["name"] = f"{meta['name']}, converted from {source}"
        meta["image_classes"] = f"read, cropped and resized as the source does: {spec.pipeline}"
        meta.setdefault("required_packages_version", {}).update(_package_versions(spec.packages))
        meta["weights"] = {
            "status": "converted",
            "source": f"{spec.origin}: {Path(checkpoint).name} (sha256 {sha256sum(checkpoint)})",
            "description": f"models/model.pt converted by `medzoo convert {source}`; preprocessing: {spec.pipeline}.",
            "sha256": sha256sum(weights),
            "op_threshs": op_threshs,
            "calibration": "none" if op_threshs is None else "dropped" if drop_op_threshs else "op_norm",
            "parity": report,
        }
        meta_file.write_text(json.dumps(meta, indent=4) + "\n")
        card = staging / "docs" / "README.md"
        card.write_text(_card(source, output_dir.name, card.read_text(), report, calibration))
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir
