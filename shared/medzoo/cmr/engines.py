"""Pieces that plug the cardiac bundles into MONAI's SupervisedTrainer / SupervisedEvaluator: batch preparation,
loss adapters, metrics, and handlers writing metrics and NIfTI outputs."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.inferers import SimpleInferer
from monai.metrics import CumulativeIterationMetric
from monai.networks.blocks import Warp
from torch import nn

from medzoo.cmr.motion import MotionFeatures, folding_fraction
from medzoo.fileio import atomic_write_text
from medzoo.handlers import iteration_items
from medzoo.inferers import PlainTensorInferer
from medzoo.io_checks import read_nifti_header, save_nifti
from medzoo.spatial import center_restore

__all__ = [
    "FoldingFraction",
    "MaskOverlap",
    "MetricsJSON",
    "MotionFeatureBatch",
    "PhotometricReduction",
    "SliceNiftiWriter",
    "StackedTargetLoss",
]

logger = logging.getLogger(__name__)


class StackedTargetLoss(nn.Module):
    """Adapt a loss ``loss(ddf, **named_images)`` to ``(ddf, target)`` where ``target`` stacks the named images.

    ``target`` is (B, len(channels), H, W); channel ``i`` is passed as keyword ``channels[i]`` with shape (B, 1, H, W).
    Lets an unsupervised registration loss run in :class:`monai.engines.SupervisedTrainer`, whose loss gets
    ``(prediction, label)``.

    Example::

        StackedTargetLoss(PhotometricSmoothnessLoss(), channels=["moving", "fixed"])  # label = [ED, ES] frames
    """

    def __init__(self, loss: nn.Module, channels: Sequence[str]) -> None:
        super().__init__()
        self.loss, self.channels = loss, list(channels)

    def forward(self, ddf: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape[1] != len(self.channels):
            raise ValueError(f"target has {target.shape[1]} channels, expected {len(self.channels)}: {self.channels}")
        return self.loss(ddf, **{name: target[:, i : i + 1] for i, name in enumerate(self.channels)})


class MotionFeatureBatch:
    """``prepare_batch`` for the MI segmentation engines: network input = :class:`MotionFeatures` of the frames.

    Returns ``(features (B, 4, H, W), label (B, 1, H, W) or None)`` from ``batch[frames_key]`` (B, 2, H, W) and
    ``batch[label_key]``. ``input_network`` (frames -> features) is public: the benchmark measures the bare networks
    of an inference as ``input_network`` followed by the bundle's network.
    """

    def __init__(self, motion_network: nn.Module, frames_key: str = "frames", label_key: str = "label") -> None:
        self.input_network = MotionFeatures(motion_network)
        self.frames_key, self.label_key = frames_key, label_key
        self._inferer = PlainTensorInferer(
            SimpleInferer()
        )  # plain-tensor forward; the output keeps the batch's metadata

    def __call__(self, batchdata: dict, device: torch.device | str | None = None, non_blocking: bool = False, **kwargs):
        frames = torch.as_tensor(batchdata[self.frames_key]).to(device=device, non_blocking=non_blocking)
        label = batchdata.get(self.label_key)
        if label is not None:
            label = torch.as_tensor(label).to(device=device, non_blocking=non_blocking)
        if next(self.input_network.parameters()).device != frames.device:
            self.input_network.to(frames.device)
        return self._inferer(frames, self.input_network), label


class PhotometricReduction(CumulativeIterationMetric):
    """Fraction by which a displacement field cuts the L1 photometric error against the identity transform.

    Per item: ``e_u = mean |m(p + u(p)) - f(p)|`` and ``e_0 = mean |m(p) - f(p)|``; aggregate
    ``1 - sum e_u / sum e_0`` (0: no better than identity, 0.5: error halved, 1: perfect).
    ``y_pred`` is the DDF (B, 2, H, W); ``y`` stacks [moving, fixed] (B, 2, H, W).
    """

    def __init__(self) -> None:
        super().__init__()
        self.warp = Warp(mode="bilinear", padding_mode="border")

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        moving, fixed = y[:, :1].float(), y[:, 1:2].float()
        warped = self.warp(moving, y_pred.float())
        errors = [(warped - fixed).abs().flatten(1).mean(1), (moving - fixed).abs().flatten(1).mean(1)]
        return torch.stack(errors, dim=1)

    def aggregate(self) -> float:
        errors = self.get_buffer()
        return float(1.0 - errors[:, 0].sum() / errors[:, 1].sum().clamp(min=1e-12))


class FoldingFraction(CumulativeIterationMetric):
    """Mean fraction of pixels where the DDF folds (Jacobian determinant <= 0); ``y_pred`` (B, 2, H, W)."""

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return folding_fraction(y_pred.float())[:, None]

    def aggregate(self) -> float:
        return float(self.get_buffer().mean())


class MaskOverlap(CumulativeIterationMetric):
    """Dice of the moving mask, warped by the DDF (nearest), with the fixed mask; or before warping.

    ``y_pred`` is the DDF (B, 2, H, W); ``y`` holds the masks at channels ``fixed_channel`` and ``moving_channel``.
    Aggregate: mean Dice over items.

    Args:
        after_registration: Dice of the warped moving mask (True) or of the moving mask as it is (False).
    """

    def __init__(self, fixed_channel: int = 2, moving_channel: int = 3, after_registration: bool = True) -> None:
        super().__init__()
        self.fixed_channel, self.moving_channel = fixed_channel, moving_channel
        self.after_registration = after_registration
        self.warp = Warp(mode="nearest", padding_mode="zeros")

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        fixed = y[:, self.fixed_channel : self.fixed_channel + 1].float()
        moving = y[:, self.moving_channel : self.moving_channel + 1].float()
        if self.after_registration:
            moving = self.warp(moving, y_pred.float())
        inter = (fixed * moving).flatten(1).sum(1)
        total = fixed.flatten(1).sum(1) + moving.flatten(1).sum(1)
        return (2 * inter / total.clamp(min=1e-8))[:, None]

    def aggregate(self) -> float:
        return float(self.get_buffer().mean())


class MetricsJSON:
    """Write ``engine.state.metrics`` (numbers only) and the number of samples to ``output_file`` when a run ends.

    A non-finite value (e.g. HD95 when a prediction is empty) is written as ``null``, so the file stays valid JSON.
    """

    def __init__(self, output_file: str | os.PathLike) -> None:
        self.output_file = Path(output_file)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        numbers = {k: float(v) for k, v in engine.state.metrics.items() if isinstance(v, (int, float, np.floating))}
        report: dict = {k: (v if math.isfinite(v) else None) for k, v in numbers.items()}
        report["num_samples"] = len(engine.data_loader.dataset) if hasattr(engine.data_loader, "dataset") else None
        atomic_write_text(self.output_file, json.dumps(report, indent=2) + "\n")
        logger.info("metrics %s written to %s", report, self.output_file)


class SliceNiftiWriter:
    """Write each item's prediction as NIfTI with the affine and header of its source cine slice.

    The prediction (C, H, W) is written as (C, H, W), the leading axis taking the place of the cine's frame axis, at
    the source's in-plane size. Files: ``<output_dir>/<case folder>/<source stem>_<suffix><output_ext>``, written
    atomically. Items flagged by :class:`medzoo.data.GuardedDataset` are skipped (they are logged there).

    Args:
        output_dir: output folder.
        suffix: file name suffix, e.g. ``"mi"`` or ``"ddf"``.
        dtype: numpy dtype of the written array.
        pred_key: the output to write.
        output_ext: ``".nii.gz"`` or ``".nii"``. gzip pays for masks; float32 outputs (displacement fields, warped
            slices) barely shrink and cost zlib time.
        fitted_size: the (H', W') the loaders fitted the source to (their ``spatial_size``, see
            :func:`medzoo.spatial.center_fit`); a prediction of that size is brought back to the source's size
            by :func:`medzoo.spatial.center_restore`. ``None``: the prediction must already have the source's
            size (e.g. after ``Invertd``).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        suffix: str,
        dtype: str = "float32",
        pred_key: str = "pred",
        output_ext: str = ".nii.gz",
        fitted_size: Sequence[int] | None = None,
    ) -> None:
        if output_ext not in (".nii.gz", ".nii"):
            raise ValueError(f"output_ext must be '.nii.gz' or '.nii', got '{output_ext}'")
        self.output_dir, self.suffix, self.dtype, self.pred_key = Path(output_dir), suffix, np.dtype(dtype), pred_key
        self.output_ext = output_ext
        self.fitted_size = None if fitted_size is None else tuple(int(n) for n in fitted_size)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        for item, out in iteration_items(engine):
            if item.get("error"):
                continue
            source = Path(item["source"])
            header = read_nifti_header(source)
            source_size = tuple(header.get_data_shape()[-2:])
            array = torch.as_tensor(out[self.pred_key]).detach().cpu().numpy().astype(self.dtype)
            if self.fitted_size is not None:
                if array.shape[-2:] != self.fitted_size:
                    raise ValueError(
                        f"prediction for {source} is {array.shape[-2:]}, expected the fitted {self.fitted_size}"
                    )
                array = center_restore(array, source_size)
            if array.shape[-2:] != source_size:
                raise ValueError(f"prediction for {source} is {array.shape[-2:]}, the image is {source_size}")
            stem = source.name.split(".")[0]
            path = self.output_dir / source.parent.name / f"{stem}_{self.suffix}{self.output_ext}"
            save_nifti(array, header.get_best_affine(), path, header=header)
