"""Grad-CAM overlays of a classifier's predictions during inference (a bundle's ``--gradcam True``).

:class:`GradCAMSaver` is the evaluator handler: for each input, the map of every class predicted at or above a
threshold, drawn over the image at its stored resolution, and ``gradcam.csv`` listing what was drawn or why not.
Under ``torchrun`` its gathering form is :class:`medzoo.distributed.GatheredGradCAMSaver`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from .fileio import atomic_path
from .handlers import iteration_items

__all__ = ["GradCAMSaver"]

logger = logging.getLogger(__name__)


class GradCAMSaver:
    """Grad-CAM overlays, at the stored image's own resolution, for the classes predicted at or above ``threshold``.

    For each input and each class ``c`` with probability >= ``threshold``, the map is :class:`monai.visualize.GradCAM`'s
    on ``target_layer`` (channel weights: spatial mean of the gradient of logit ``c``; map: ReLU of the weighted sum of
    the layer's activations, shape (h, w) of that layer), divided by its peak (zero stays zero, the peak is 1; not
    MONAI's default min-max normaliser, which maps the peak to 0), bilinearly upsampled to the (H, W) of the image as
    ``reader`` reads it from its file, and blended on that image with an opacity proportional to the map (``alpha`` at
    the peak), blue (low) to red (high). Overlays are ``<output_dir>/<input stem>_<label>_gradcam.png``.

    ``<output_dir>/gradcam.csv`` lists every input with ``file, label, probability, overlay``: one row per class drawn
    (``overlay`` is the PNG's name), or one row for the most probable class with ``overlay`` saying why none was
    written: no class at or above the threshold (no overlay is drawn for a finding that is not predicted), or a map that
    is zero everywhere at the target layer. Files are written atomically; inputs flagged as failed are skipped (they
    are in the predictions' ``errors.csv``).

    ``target_layer`` must be a feature map before the network's global pooling, e.g. ``"features.denseblock4"`` for
    MONAI's DenseNet121: at the output of the last ReLU before a pooling + linear head, Grad-CAM reduces to CAM and is
    all zero for a class whose evidence is negative everywhere.

    Args:
        network: the evaluated network (eval mode; gradients are taken w.r.t. activations only).
        target_layer: name of the module whose output activations and gradients make the map.
        output_dir: folder of the overlays and ``gradcam.csv``.
        labels: class names, in output order.
        threshold: overlays for the classes with probability >= threshold.
        alpha: opacity of the heatmap where the map peaks.
        reader: ``path -> (H, W)`` float array in [0, 255], the image at its stored resolution (default: the chest
            X-ray reader :func:`medzoo.cxr.transforms.read_xray`, the same the bundles' preprocessing resizes from).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        target_layer: str,
        output_dir: str | os.PathLike,
        labels: Sequence[str],
        threshold: float = 0.5,
        alpha: float = 0.5,
        pred_key: str = "pred",
        reader: Callable[[str], np.ndarray] | None = None,
    ) -> None:
        from monai.visualize import GradCAM

        if threshold is None or not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"gradcam threshold must be a probability in [0, 1], got {threshold}")
        if target_layer not in dict(network.named_modules()):
            raise ValueError(f"gradcam target layer '{target_layer}' is not a module of {type(network).__name__}")
        self.cam = GradCAM(nn_module=network, target_layers=target_layer)
        self.output_dir = Path(output_dir)
        self.labels = list(labels)
        self.threshold = float(threshold)
        self.alpha = alpha
        self.pred_key = pred_key
        if reader is None:
            from medzoo.cxr.transforms import read_xray as reader
        self.reader = reader
        self.rows: list[list[str]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._write_index)

    def _reset(self, engine: Engine) -> None:
        self.rows = []

    def heatmap(self, image: torch.Tensor, class_idx: int, size: Sequence[int]) -> np.ndarray:
        """Grad-CAM of ``class_idx`` for one preprocessed ``image`` (C, h, w) as a (H, W) = ``size`` float32 array in
        [0, 1], divided by its peak; all zero if the map is zero everywhere at the target layer."""
        device = next(self.cam.nn_module.model.parameters()).device
        with torch.enable_grad():
            raw = self.cam.compute_map(torch.as_tensor(image).float()[None].to(device), class_idx=class_idx)
        raw = raw.detach().float().cpu()
        peak = float(raw.max())
        if not peak > 0.0:
            return np.zeros(tuple(size), dtype=np.float32)
        up = torch.nn.functional.interpolate(
            raw / peak, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False
        )
        return up[0, 0].clamp(0.0, 1.0).numpy()

    def __call__(self, engine: Engine) -> None:
        from PIL import Image

        for item, out in iteration_items(engine):
            if item["error"]:
                continue
            source = str(item["source"])
            probs = torch.as_tensor(out[self.pred_key]).detach().float().cpu().reshape(-1)
            classes = [int(c) for c in torch.nonzero(probs >= self.threshold).reshape(-1)]
            if not classes:
                top = int(probs.argmax())
                self.rows.append(
                    [source, self.labels[top], f"{probs[top]:.6f}", f"none: no class >= {self.threshold:g}"]
                )
                continue
            gray = np.asarray(self.reader(source), dtype=np.float32) / 255.0
            for c in classes:
                heat = self.heatmap(item["image"], c, gray.shape)
                if not heat.any():
                    self.rows.append(
                        [source, self.labels[c], f"{probs[c]:.6f}", "none: map is zero at the target layer"]
                    )
                    continue
                name = f"{Path(source).stem}_{self.labels[c]}_gradcam.png"
                with atomic_path(self.output_dir / name) as tmp:
                    Image.fromarray(self._overlay(gray, heat)).save(tmp, format="PNG")
                self.rows.append([source, self.labels[c], f"{probs[c]:.6f}", name])

    def _write_index(self, engine: Engine) -> None:
        with atomic_path(self.output_dir / "gradcam.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "label", "probability", "overlay"])
            writer.writerows(self.rows)
        drawn = sum(row[3].endswith(".png") for row in self.rows)
        logger.info(
            "Grad-CAM: %d overlay(s) for classes >= %g; %d input(s) without one -> %s",
            drawn,
            self.threshold,
            sum(not row[3].endswith(".png") for row in self.rows),
            self.output_dir / "gradcam.csv",
        )

    def _overlay(self, gray: np.ndarray, heat: np.ndarray) -> np.ndarray:
        """(H, W) image and heatmap in [0, 1] -> (H, W, 3) uint8: the heatmap, blue-to-red, blended with opacity
        ``alpha * heat`` (the image is left as it is where the map is zero)."""
        colour = np.stack([heat, 1.0 - np.abs(2.0 * heat - 1.0), 1.0 - heat], axis=-1)
        opacity = (self.alpha * heat)[..., None]
        blended = (1 - opacity) * np.clip(gray, 0.0, 1.0)[..., None] + opacity * colour
        return np.round(np.clip(blended, 0, 1) * 255).astype(np.uint8)
