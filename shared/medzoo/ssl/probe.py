"""Linear-probe evaluation: a logistic regression per label on frozen embeddings, scored by AUROC on a test set."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from medzoo.fileio import atomic_write_text
from medzoo.metrics import MultiLabelAUROC

from .embeddings import extract_embeddings

__all__ = ["linear_probe_auroc", "run_linear_probe"]

logger = logging.getLogger(__name__)


def linear_probe_auroc(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    labels: Sequence[str],
    regularisation: float = 1.0,
    ignore_value: float = -1.0,
) -> dict:
    """Fit one L2-regularised logistic regression per label on standardised ``train_x`` ``(N, D)`` and targets
    ``train_y`` ``(N, C)``; return the test AUROC (:class:`medzoo.metrics.MultiLabelAUROC`).

    A label whose known training targets are all one value cannot be fitted; it is reported as NaN (None in the
    result) and left out of the mean, as is a label whose test targets are all one value.

    Returns:
        ``{"mean_auroc": float, "per_class_auroc": {label: float | None}, "num_train": N, "num_samples": M}``
        (``num_samples``: the test images, named as in the other bundles' evaluation output)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"need (N, D) train and test embeddings of the same D, got {train_x.shape} and {test_x.shape}")
    if train_y.shape != (len(train_x), len(labels)) or test_y.shape != (len(test_x), len(labels)):
        raise ValueError(f"need (N, {len(labels)}) targets, got {train_y.shape} and {test_y.shape}")
    if not (np.isfinite(train_x).all() and np.isfinite(test_x).all()):
        raise ValueError("embeddings contain NaN or infinite values")
    scaler = StandardScaler().fit(train_x)
    train_x, test_x = scaler.transform(train_x), scaler.transform(test_x)
    scores = np.zeros(test_y.shape, dtype=np.float32)
    targets = test_y.astype(np.float32).copy()
    for c, name in enumerate(labels):
        known = train_y[:, c] != ignore_value
        y = train_y[known, c]
        if not ((y == 1).any() and (y == 0).any()):
            logger.warning("linear probe: no positive or no negative training example for %s; left out", name)
            targets[:, c] = ignore_value
            continue
        model = LogisticRegression(C=regularisation, max_iter=2000).fit(train_x[known], y.astype(int))
        scores[:, c] = model.decision_function(test_x)
    metric = MultiLabelAUROC(labels)
    metric(torch.from_numpy(scores), torch.from_numpy(targets))
    mean = float(metric.aggregate())
    return {
        "mean_auroc": mean,
        "per_class_auroc": {k: (None if math.isnan(v) else round(v, 6)) for k, v in metric.per_class.items()},
        "num_train": len(train_x),
        "num_samples": len(test_x),
    }


def _encoder(network: torch.nn.Module) -> torch.nn.Module:
    network = getattr(network, "module", network)  # DistributedDataParallel
    return getattr(network, "encoder", network)


def run_linear_probe(
    network: torch.nn.Module,
    train_loader: torch.utils.data.DataLoader,
    test_loader: torch.utils.data.DataLoader,
    labels: Sequence[str],
    output_file: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    baseline_network: torch.nn.Module | None = None,
    regularisation: float = 1.0,
) -> dict:
    """Linear probe of ``network``'s encoder (a :class:`~medzoo.ssl.model.SimCLRNet` or an encoder): embed the
    labelled ``train_loader`` and ``test_loader`` batches (keys ``image`` and ``label``), fit
    :func:`linear_probe_auroc`, and write the result as JSON to ``output_file``.

    With ``baseline_network`` (e.g. the same architecture, randomly initialised) the same probe runs on its features
    too, reported under ``baseline_*`` keys with ``margin = mean_auroc - baseline_mean_auroc``.
    """

    def probe(net: torch.nn.Module) -> dict:
        encoder = _encoder(net).to(device)
        train_x, train_y = extract_embeddings(encoder, train_loader, device)
        test_x, test_y = extract_embeddings(encoder, test_loader, device)
        if train_y is None or test_y is None:
            raise ValueError("the linear probe needs labelled batches (a 'label' key)")
        return linear_probe_auroc(train_x, train_y, test_x, test_y, labels, regularisation)

    report = probe(network)
    logger.info("linear probe: mean AUROC %.4f on %d test images", report["mean_auroc"], report["num_samples"])
    if baseline_network is not None:
        baseline = probe(baseline_network)
        report["baseline_mean_auroc"] = baseline["mean_auroc"]
        report["baseline_per_class_auroc"] = baseline["per_class_auroc"]
        report["margin"] = report["mean_auroc"] - baseline["mean_auroc"]
        logger.info("baseline linear probe: mean AUROC %.4f (margin %+.4f)", baseline["mean_auroc"], report["margin"])
    if output_file is not None:
        atomic_write_text(output_file, json.dumps(report, indent=2) + "\n")
        logger.info("linear-probe metrics written to %s", output_file)
    return report
