"""Ignite handlers of the volume bundles."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.data import NibabelWriter

from medzoo.fileio import atomic_write_text

__all__ = ["AtomicNibabelWriter", "MetricsJSON"]

logger = logging.getLogger(__name__)


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: an undefined metric (e.g. AUROC on a one-class set) is written as null."""
    return value if math.isfinite(value) else None


class MetricsJSON:
    """Write an evaluator's metrics, overall and per class, to ``output_file`` (JSON, atomically) when it completes.

    Scalars come from ``engine.state.metrics`` (``null`` when undefined, e.g. AUROC of a one-class set). For every metric whose MONAI handler saved details
    (``engine.state.metric_details[name]``, shape [N items, C classes]), the per-class mean over the items where the
    metric is finite is added as ``"<name>_per_class": {class_name: value}``, with ``null`` for a class never
    measured (e.g. HD95 when a structure is absent from every prediction), and the count of non-finite entries.

    Args:
        output_file: JSON file.
        class_names: names of the C classes in the details' column order (e.g. the labels without background).
    """

    def __init__(self, output_file: str | os.PathLike, class_names: Sequence[str] | None = None) -> None:
        self.output_file = Path(output_file)
        self.class_names = list(class_names) if class_names is not None else None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        report: dict = {
            k: _finite_or_none(float(v))
            for k, v in engine.state.metrics.items()
            if isinstance(v, (int, float, torch.Tensor))
        }
        for name, details in getattr(engine.state, "metric_details", {}).items():
            details = torch.as_tensor(details).float().reshape(len(details), -1)
            names = self.class_names if self.class_names is not None else [str(c) for c in range(details.shape[1])]
            if len(names) != details.shape[1]:
                raise ValueError(
                    f"metric '{name}' has {details.shape[1]} classes but class_names lists {len(names)}: {names}"
                )
            finite = torch.isfinite(details)
            per_class = {}
            for c, class_name in enumerate(names):
                values = details[finite[:, c], c]
                per_class[class_name] = round(float(values.mean()), 6) if len(values) else None
            report[f"{name}_per_class"] = per_class
            report[f"{name}_non_finite"] = int((~finite).sum())
        report["num_samples"] = len(engine.data_loader.dataset) if hasattr(engine.data_loader, "dataset") else None
        atomic_write_text(self.output_file, json.dumps(report, indent=2) + "\n")
        shown = ", ".join(f"{k} {v:.4f}" for k, v in report.items() if isinstance(v, float))
        logger.info("metrics (%s) written to %s", shown, self.output_file)


class AtomicNibabelWriter(NibabelWriter):
    """MONAI's NIfTI writer, writing to a hidden file beside the target and renaming it when complete.

    Use as ``SaveImaged(..., writer="medzoo.volume.handlers.AtomicNibabelWriter")``: a reader never sees a
    half-written segmentation, and an interrupted run leaves no partial file under the final name.
    """

    def write(self, filename: str | os.PathLike, verbose: bool = False, **obj_kwargs) -> None:
        final = Path(filename)
        partial = final.with_name(f".{final.name}.partial{''.join(final.suffixes[-2:])}")  # keeps .nii.gz
        try:
            super().write(str(partial), verbose=verbose, **obj_kwargs)
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
