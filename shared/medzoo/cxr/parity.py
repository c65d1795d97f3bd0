"""Parity of a converted chest X-ray bundle with its source: the source model on its own pipeline against the bundle's
``inference.json``, on generated PNG files (square and non-square 8-bit, RGB, 16-bit); probabilities compared per file.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import torch

from .labels import CHEXNET_LABELS
from .transforms import INPUT_PRESETS

__all__ = ["PARITY_BOUND", "chexnet_reference", "measure_parity", "write_parity_images", "xrv_reference"]

#: Largest allowed absolute difference of any probability between the source and the converted bundle.
PARITY_BOUND = 1e-3


def write_parity_images(folder: str | os.PathLike, seed: int = 0) -> dict[str, Path]:
    """Write the files the parity check runs on: kind -> PNG path. Smooth random structure plus pixel noise, so
    resize filters and crops matter: ``square_8bit`` 320x320, ``nonsquare_8bit`` 300x380 (H x W), ``rgb_8bit``
    340x280 with differing channels, ``gray_16bit`` 360x300."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def pattern(height: int, width: int) -> np.ndarray:
        """Values in [0, 1]: an upsampled 6x6 random grid, a vertical gradient and fine noise."""

        def linear(n: int) -> np.ndarray:  # [n, 6] linear interpolation weights over 6 grid points
            position = np.linspace(0.0, 5.0, n)
            left = np.minimum(position.astype(int), 4)
            weights = np.zeros((n, 6))
            weights[np.arange(n), left] = 1.0 - (position - left)
            weights[np.arange(n), left + 1] = position - left
            return weights

        smooth = linear(height) @ rng.random((6, 6)) @ linear(width).T
        ramp = np.linspace(0.0, 0.3, height)[:, None]
        return np.clip(0.6 * smooth + ramp + 0.15 * rng.random((height, width)), 0.0, 1.0)

    images = {
        "square_8bit": (pattern(320, 320) * 255).round().astype(np.uint8),
        "nonsquare_8bit": (pattern(300, 380) * 255).round().astype(np.uint8),
        "rgb_8bit": (np.stack([pattern(340, 280) for _ in range(3)], axis=-1) * 255).round().astype(np.uint8),
        "gray_16bit": (pattern(360, 300) * 65535).round().astype(np.uint16),
    }
    paths = {}
    for kind, pixels in images.items():
        paths[kind] = folder / f"{kind}.png"
        Image.fromarray(pixels).save(paths[kind])
    return paths


def chexnet_reference(state_dict: dict[str, torch.Tensor], files: list[Path]) -> torch.Tensor:
    """CheXNet's model (torchvision DenseNet-121, Linear + Sigmoid head) on its pipeline: probabilities [N, 14]."""
    import torchvision
    from PIL import Image
    from torchvision import transforms

    model = torchvision.models.densenet121(weights=None)
    model.classifier = torch.nn.Sequential(torch.nn.Linear(1024, len(CHEXNET_LABELS)), torch.nn.Sigmoid())
    renamed = {
        re.sub(r"\.(norm|conv)\.([12])\.", r".\1\2.", k.removeprefix("module.").removeprefix("densenet121.")): v
        for k, v in state_dict.items()
    }
    missing, unexpected = model.load_state_dict(renamed, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise RuntimeError(
            f"parity check: the CheXNet reference model did not load (missing {missing}, unexpected {unexpected})"
        )
    preset = INPUT_PRESETS["chexnet"]
    pipeline = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(preset["mean"], preset["std"]),
        ]
    )

    def read(path: Path) -> Image.Image:
        img = Image.open(path)
        if img.mode.startswith("I"):  # the stated 16-bit rule: the 8-bit image of round(v / 257)
            img = Image.fromarray(np.round(np.asarray(img) / 257.0).astype(np.uint8))
        return img.convert("RGB")

    with torch.no_grad():
        return model.eval()(torch.stack([pipeline(read(f)) for f in files]))


def xrv_reference(
    state_dict: dict[str, torch.Tensor], files: list[Path], labels: list[str], source_labels: list[str]
) -> torch.Tensor:
    """torchxrayvision's DenseNet on its README pipeline: probabilities of ``labels`` [N, L], calibrated by
    ``op_norm`` when the state dict has ``op_threshs``."""
    import skimage.io
    import torchvision
    import torchxrayvision as xrv

    weights = {k.removeprefix("module."): v for k, v in state_dict.items()}
    op_threshs = weights.pop("op_threshs", None)
    model = xrv.models.DenseNet(weights=None, num_classes=len(source_labels), apply_sigmoid=True)
    model.load_state_dict(weights)
    if op_threshs is not None:  # as xrv.models.DenseNet(weights=...) sets it after loading
        model.op_threshs = op_threshs
    crop_resize = torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(224)])

    def read(path: Path) -> np.ndarray:
        img = skimage.io.imread(path)
        if img.ndim == 3:
            return xrv.datasets.normalize(img[..., :3], 255).mean(2)[None]
        return xrv.datasets.normalize(img, 65535 if img.dtype == np.uint16 else 255)[None]

    rows = [source_labels.index(label) for label in labels]
    with torch.no_grad():
        x = torch.stack([torch.from_numpy(crop_resize(read(f))) for f in files])
        return model.eval()(x)[:, rows]


def measure_parity(
    source: str, bundle_dir: Path, state_dict: dict[str, torch.Tensor], source_labels: list[str], workdir: Path
) -> dict:
    """Run the source pipeline and the bundle's inference.json on :func:`write_parity_images`; the report."""
    from ..workflows import run_configs
    from ..zoo import Bundle

    files = write_parity_images(workdir / "images")
    labels = list(CHEXNET_LABELS)
    report = {"files": {kind: path.name for kind, path in files.items()}, "bound": PARITY_BOUND}
    if source == "xrv":
        try:
            import torchxrayvision as xrv
        except ImportError:
            return {**report, "status": "not measured: torchxrayvision is not installed where the bundle was converted"}
        report["reference"] = f"torchxrayvision {xrv.__version__}"
        expected = xrv_reference(state_dict, list(files.values()), labels, source_labels)
    else:
        import torchvision

        report["reference"] = f"torchvision {torchvision.__version__}"
        expected = chexnet_reference(state_dict, list(files.values()))
    run_configs(
        Bundle(bundle_dir),
        ["inference.json"],
        workflow_type="infer",
        input=str(workdir / "images"),
        output_dir=str(workdir / "eval"),
        num_workers=0,
    )
    with open(workdir / "eval" / "predictions.csv") as f:
        table = {Path(r["file"]).name: [float(r[label]) for label in labels] for r in csv.DictReader(f)}
    expected = expected.float()
    differences = {}
    for i, (kind, path) in enumerate(files.items()):
        if path.name not in table:
            raise RuntimeError(f"parity check: the converted bundle gave no prediction for {path.name}")
        differences[kind] = float((torch.tensor(table[path.name]) - expected[i]).abs().max())
    report.update(
        status="measured",
        max_abs_probability_difference=differences,
        max_abs_probability_difference_all=max(differences.values()),
        source_probabilities={"min": float(expected.min()), "max": float(expected.max()), "std": float(expected.std())},
    )
    return report
