"""Predictive uncertainty at inference: test-time augmentation and MC dropout, for the bundles' ``inference.json``.

:class:`UncertaintyInferer` runs a network ``num_samples`` times per input, each time on a randomly augmented copy
(test-time augmentation through MONAI's :class:`monai.data.TestTimeAugmentation`, spatial predictions mapped back
through the augmentation's inverse), with the network's dropout layers active (MC dropout), or both, and returns the
mean and standard deviation of the activated outputs (probabilities) over the samples. :class:`SplitMeanStdd` splits
that output for the postprocessing, :class:`InvertEntropyd` turns the mean class probabilities of a segmentation into
a voxel-wise predictive entropy on the original image grid, and :class:`UncertaintySummary` writes one row of summary
figures per input. The classifiers' per-label columns are written by :class:`medzoo.handlers.PredictionCSVWriter`
(``std_key``).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Callable, Hashable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.config import KeysCollection
from monai.data import TestTimeAugmentation
from monai.inferers import Inferer
from monai.transforms import Compose, MapTransform
from torch import nn

from .errors import UserValueError
from .fileio import atomic_path
from .handlers import iteration_items
from .volume.transforms import InvertArgMaxd

__all__ = [
    "METHODS",
    "InvertEntropyd",
    "SplitMeanStdd",
    "UncertaintyInferer",
    "UncertaintySummary",
    "active_dropout",
    "dropout_layers",
]

logger = logging.getLogger(__name__)

#: What varies between the samples: the input (test-time augmentation), the network (MC dropout), or both.
METHODS = ("tta", "mc_dropout", "tta_mc_dropout")
_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: torch.softmax(x, dim=1),
}


def dropout_layers(network: nn.Module) -> list[nn.Module]:
    """The dropout modules of ``network`` (any ``nn.Dropout*`` / ``AlphaDropout``) that drop something (``p > 0``)."""
    return [m for m in network.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]


@contextmanager
def active_dropout(layers: list[nn.Module]):
    """Put ``layers`` in training mode (dropping at random) for the block, then back in the mode each had."""
    modes = [m.training for m in layers]
    try:
        for m in layers:
            m.train()
        yield
    finally:
        for m, mode in zip(layers, modes):
            m.train(mode)


class UncertaintyInferer(Inferer):
    """``num_samples`` activated predictions per input; returns their mean and standard deviation, concatenated.

    ``method``:

    - ``"tta"``: each sample is ``inferer`` on a copy of the input augmented by ``augmentation`` (a random dict
      transform on key ``"image"``), run through :class:`monai.data.TestTimeAugmentation`; with ``spatial_output``
      the predictions are mapped back by the augmentation's inverse (linear interpolation) before they are combined,
      so the augmentation's random spatial steps must be invertible (random intensity steps need no inverse);
    - ``"mc_dropout"``: each sample is ``inferer`` on the input as it is, with the network's dropout layers dropping
      (MC dropout); a network without dropout (``p > 0``) is refused, since all its samples would be equal;
    - ``"tta_mc_dropout"``: both at once.

    The augmentation's random state is seeded with ``seed`` once, so a run is reproducible under
    ``monai.utils.set_determinism`` (which seeds the dropout masks). The ``num_samples`` copies of one input go
    through ``inferer`` as one batch, so memory grows with ``num_samples``.

    Args:
        inferer: the inferer of a single prediction, e.g. ``SimpleInferer()`` or ``SlidingWindowInferer(...)``.
        network: the network the workflow runs, checked for dropout layers when ``method`` uses MC dropout.
        method: one of :data:`METHODS`.
        num_samples: predictions per input (at least 2).
        augmentation: random dict transform on ``"image"`` for the TTA methods, e.g. ``RandAffined``.
        activation: ``"sigmoid"`` (multi-label) or ``"softmax"`` (over channel 1) applied to each sample's output.
        spatial_output: the prediction is an image on the input's grid (segmentation), not a vector of scores.
        seed: seed of the augmentation's random state.

    Returns (from ``__call__``): ``(B, 2 * C, *S)``: channels ``[:C]`` the mean probabilities, ``[C:]`` their
    standard deviation (unbiased, over the samples), for a ``(B, C, *S)`` prediction.
    """

    def __init__(
        self,
        inferer: Inferer,
        network: nn.Module,
        method: str = "tta",
        num_samples: int = 8,
        augmentation: Callable | None = None,
        activation: str = "sigmoid",
        spatial_output: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise UserValueError(f"uncertainty method '{method}' is not one of {', '.join(METHODS)}: pick one")
        if int(num_samples) < 2:
            raise UserValueError(f"uncertainty needs num_samples >= 2, got {num_samples}: pass e.g. 8")
        if activation not in _ACTIVATIONS:
            raise UserValueError(f"activation '{activation}' is not one of {', '.join(_ACTIVATIONS)}")
        self.dropout = dropout_layers(network) if "mc_dropout" in method else []
        if "mc_dropout" in method and not self.dropout:
            raise UserValueError(
                f"uncertainty method '{method}' needs dropout, and {type(network).__name__} has no dropout layer with "
                "p > 0: use --uncertainty_method tta, or a network trained with dropout"
            )
        self.inferer, self.method, self.num_samples = inferer, method, int(num_samples)
        self.activation = _ACTIVATIONS[activation]
        self.tta = None
        if "tta" in method:
            if augmentation is None:
                raise UserValueError(f"uncertainty method '{method}' needs an augmentation (uncertainty_augmentation)")
            transform = augmentation if isinstance(augmentation, Compose) else Compose([augmentation])
            transform.set_random_state(seed=seed)
            self.tta = TestTimeAugmentation(
                transform,
                batch_size=int(num_samples),
                num_workers=0,
                image_key="image",
                orig_key="image",
                nearest_interp=False,
                to_tensor=True,
                return_full_data=True,
                progress=False,
                apply_inverse_to_pred=spatial_output,
            )

    def _samples(self, image: torch.Tensor, network: Any) -> torch.Tensor:
        """``image`` (C_in, *S) -> (N, C, *S') activated predictions."""

        def predict(x: torch.Tensor) -> torch.Tensor:
            return self.activation(self.inferer(x, network).float())

        if self.tta is not None:
            self.tta.inferrer_fn, self.tta.device = predict, image.device
            return torch.as_tensor(self.tta({"image": image}, self.num_samples)).float()
        batch = image[None].expand(self.num_samples, *image.shape)  # one forward, a dropout mask per sample
        return torch.as_tensor(predict(batch)).float().cpu()

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``inputs`` (B, C_in, *S) -> (B, 2 * C, *S') mean and standard deviation of the activated predictions."""
        outputs = []
        with active_dropout(self.dropout):
            for i in range(len(inputs)):
                samples = self._samples(inputs[i], network)
                outputs.append(torch.cat([samples.mean(0), samples.std(0)]))
        return torch.stack(outputs).to(inputs.device)


class SplitMeanStdd(MapTransform):
    """Split a ``(2 * C, ...)`` entry of :class:`UncertaintyInferer` into ``key`` (the mean, ``(C, ...)``) and
    ``key + std_postfix`` (the standard deviation)."""

    def __init__(self, keys: KeysCollection, std_postfix: str = "_std", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.std_postfix = std_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            both = d[key]
            if both.shape[0] % 2:
                raise ValueError(f"'{key}' has {both.shape[0]} channels; mean and std stacked need an even number")
            d[key], d[f"{key}{self.std_postfix}"] = both[: both.shape[0] // 2], both[both.shape[0] // 2 :]
        return d


class InvertEntropyd(InvertArgMaxd):
    """``(C, *S')`` mean class probabilities on the network's grid -> ``(1, *S)`` float32 predictive entropy
    ``-sum_c p_c ln p_c`` (nats; 0 for a certain voxel, ``ln C`` at most) on the original image's grid.

    The probabilities are resampled to the original grid as :class:`medzoo.volume.transforms.InvertArgMaxd` does
    (same trace, interpolation and slabs), and the entropy is taken there; pass ``softmax=False`` for probabilities.
    """

    def _output_dtype(self, num_classes: int) -> torch.dtype:
        return torch.float32

    def _reduce(self, probabilities: torch.Tensor) -> torch.Tensor:
        p = probabilities.clamp_min(0.0)
        p = p / p.sum(0, keepdim=True).clamp_min(1e-12)
        return -(p * torch.log(p.clamp_min(1e-12))).sum(0)


class UncertaintySummary:
    """Ignite handler: one CSV row per input with the means of its uncertainty maps, written atomically at the end.

    Columns: ``file``, then ``mean_<key>`` for each entry of ``keys`` (the mean over all values of the item's
    ``output[key]``, e.g. the voxel-wise entropy on the original grid, or the per-class standard deviation on the
    network grid). Inputs flagged by :class:`medzoo.data.GuardedDataset` are left out (the bundle's ``errors.csv``
    lists them).
    """

    def __init__(self, output_file: str | os.PathLike, keys: list[str]) -> None:
        self.output_file, self.keys = Path(output_file), list(keys)
        self.rows: list[list[str]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: setattr(self, "rows", []))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _collect(self, engine: Engine) -> None:
        for item, out in iteration_items(engine):
            if item["error"]:
                continue
            means = [float(torch.as_tensor(out[k]).float().mean()) for k in self.keys]
            if not all(math.isfinite(m) for m in means):
                raise ValueError(f"uncertainty of {item['source']} is not finite: {means}")
            self.rows.append([str(item["source"]), *(f"{m:.6f}" for m in means)])

    def _write(self, engine: Engine) -> None:
        with atomic_path(self.output_file) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", *(f"mean_{k}" for k in self.keys)])
            writer.writerows(self.rows)
        logger.info("uncertainty of %d input(s) -> %s", len(self.rows), self.output_file)
