"""Images in, embeddings out: unlabelled image lists, embedding extraction, and the NPY + CSV + t-SNE writer."""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from medzoo.cxr.transforms import IMAGE_EXTENSIONS
from medzoo.data import list_inputs, load_datalist, write_bad_input_report
from medzoo.fileio import atomic_path
from medzoo.handlers import iteration_items

__all__ = ["EmbeddingWriter", "extract_embeddings", "label_categories", "labels_by_file", "unlabelled_images"]

logger = logging.getLogger(__name__)


def unlabelled_images(folder: str | os.PathLike, exclude_list: str | os.PathLike | None = None) -> list[dict]:
    """``[{"image": path}, ...]`` for every image under ``folder`` (any depth), without the files named in
    ``exclude_list`` (one file name a line, e.g. NIH's ``test_list.txt``, so the test images stay unseen).

    Raises:
        FileNotFoundError: ``folder`` or a given ``exclude_list`` does not exist.
        ValueError: no images are left.
    """
    items = list_inputs(folder, IMAGE_EXTENSIONS)
    if exclude_list is not None:
        exclude_path = Path(exclude_list)
        if not exclude_path.is_file():
            raise FileNotFoundError(f"exclusion list not found: {exclude_path}")
        excluded = {line.strip() for line in exclude_path.read_text().splitlines() if line.strip()}
        kept = [item for item in items if Path(item["image"]).name not in excluded]
        logger.info(
            "%d images under %s, %d left after excluding those in %s", len(items), folder, len(kept), exclude_path
        )
        if not kept:
            raise ValueError(f"every image under {folder} is listed in {exclude_path}: nothing to pretrain on")
        items = kept
    return items


@torch.no_grad()
def extract_embeddings(
    encoder: torch.nn.Module,
    dataloader: Sequence | torch.utils.data.DataLoader,
    device: str | torch.device = "cpu",
    image_key: str = "image",
    label_key: str = "label",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run ``encoder`` (in eval mode) over ``dataloader``; return embeddings ``(N, D)`` float32 and, if the batches
    carry ``label_key``, the labels ``(N, C)`` (else None)."""
    encoder.eval()
    features, labels = [], []
    for batch in dataloader:
        out = encoder(torch.as_tensor(batch[image_key]).to(device))
        if out.ndim != 2:
            raise ValueError(f"the encoder should give (B, D) embeddings, got shape {tuple(out.shape)}")
        features.append(out.float().cpu().numpy())
        if label_key in batch:
            labels.append(torch.as_tensor(batch[label_key]).float().reshape(out.shape[0], -1).cpu().numpy())
    if not features:
        raise ValueError("no batches to embed")
    return np.concatenate(features), (np.concatenate(labels) if labels else None)


def labels_by_file(
    datalist_file: str | os.PathLike, base_dir: str | os.PathLike | None = None
) -> dict[str, list[float]]:
    """Map each image of every split of a datalist JSON (absolute, resolved path) to its label vector."""
    datalist_file = Path(datalist_file)
    with open(datalist_file) as f:
        splits = [
            key
            for key, value in json.load(f).items()
            if isinstance(value, list) and value and isinstance(value[0], dict)
        ]
    mapping = {}
    for key in splits:
        for item in load_datalist(datalist_file, key, base_dir):
            if "label" in item:
                mapping[str(Path(item["image"]).resolve())] = [float(v) for v in np.ravel(item["label"])]
    if not mapping:
        raise ValueError(f"{datalist_file} has no labelled images")
    return mapping


def label_categories(labels: np.ndarray, names: Sequence[str]) -> list[str]:
    """One category per row of multi-label targets ``(N, C)``: the finding's name if exactly one is positive, ``"No
    Finding"`` if none, ``"several"`` if more than one (unknown entries, -1, count as not positive)."""
    categories = []
    for row in np.asarray(labels):
        positive = [names[c] for c in np.flatnonzero(row == 1)]
        categories.append(positive[0] if len(positive) == 1 else ("No Finding" if not positive else "several"))
    return categories


def _tsne_png(embeddings: np.ndarray, categories: list[str], path: Path, seed: int) -> None:
    """2D t-SNE of ``embeddings`` (N, D) drawn as a scatter coloured by ``categories``, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, (len(embeddings) - 1) / 3.0))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(embeddings)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    names = sorted(set(categories), key=lambda n: (n == "several", n != "No Finding", n))
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(names):
        mask = np.array([c == name for c in categories])
        ax.scatter(points[mask, 0], points[mask, 1], s=12, color=cmap(i % 20), label=f"{name} ({mask.sum()})")
    ax.set_title(f"t-SNE of {embeddings.shape[1]}-d embeddings, {len(embeddings)} images")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


class EmbeddingWriter:
    """Collect one embedding per input during an evaluator run and write, when it completes (atomically):

    - ``embeddings.npy``: float32 ``(N, D)``, row ``i`` for row ``i`` of the CSV;
    - ``embeddings.csv``: ``row, file`` and, when labels are known, one column per label (1, 0 or -1 unknown);
    - ``tsne.png``: a 2D t-SNE (scikit-learn) coloured by :func:`label_categories`, when labels are known for at
      least ``min_tsne_points`` images (otherwise the reason is logged);
    - ``errors.csv``: ``file, error`` for inputs :class:`medzoo.data.GuardedDataset` could not read (only if any).

    Args:
        output_dir: folder of the outputs.
        labels_datalist: optional datalist JSON whose labels (matched by image path) colour the t-SNE.
        label_names: names of the label columns (required with ``labels_datalist``).
        embedding_key: key of the embedding ``(D,)`` per item in the engine output.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        labels_datalist: str | os.PathLike | None = None,
        label_names: Sequence[str] | None = None,
        embedding_key: str = "pred",
        min_tsne_points: int = 5,
        seed: int = 0,
    ) -> None:
        if labels_datalist is not None and not label_names:
            raise ValueError("label_names are needed to read labels from a datalist")
        self.output_dir = Path(output_dir)
        self.labels = labels_by_file(labels_datalist) if labels_datalist is not None else None
        self.label_names = list(label_names or [])
        self.embedding_key = embedding_key
        self.min_tsne_points = min_tsne_points
        self.seed = seed
        self.files: list[str] = []
        self.embeddings: list[np.ndarray] = []
        self.errors: list[list[str]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.files, self.embeddings, self.errors = [], [], []

    def _collect(self, engine: Engine) -> None:
        for item, out in iteration_items(engine):
            if item["error"]:
                self.errors.append([item["source"], item["error"]])
                continue
            self.files.append(item["source"])
            self.embeddings.append(torch.as_tensor(out[self.embedding_key]).detach().float().cpu().reshape(-1).numpy())

    def _write(self, engine: Engine) -> None:
        embeddings = np.stack(self.embeddings).astype(np.float32) if self.embeddings else np.zeros((0, 0), np.float32)
        with atomic_path(self.output_dir / "embeddings.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, embeddings)
        known = None
        if self.labels is not None:
            width = len(self.label_names)
            known = [self.labels.get(str(Path(f).resolve())) for f in self.files]
            bad = [f for f, lab in zip(self.files, known) if lab is not None and len(lab) != width]
            if bad:
                raise ValueError(f"labels of {bad[0]} have a length other than the {width} label names")
        with atomic_path(self.output_dir / "embeddings.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["row", "file", *self.label_names] if known is not None else ["row", "file"])
            for i, name in enumerate(self.files):
                labels = (
                    []
                    if known is None
                    else ([f"{v:g}" for v in known[i]] if known[i] is not None else [""] * len(self.label_names))
                )
                writer.writerow([i, name, *labels])
        write_bad_input_report(self.output_dir / "errors.csv", self.errors)
        logger.info(
            "wrote %d embeddings of size %d to %s; %d input(s) failed",
            *embeddings.shape,
            self.output_dir,
            len(self.errors),
        )
        if known is not None:
            rows = [i for i, lab in enumerate(known) if lab is not None]
            if len(rows) < self.min_tsne_points:
                logger.warning(
                    "t-SNE skipped: labels known for %d image(s), fewer than %d", len(rows), self.min_tsne_points
                )
                return
            categories = label_categories(np.array([known[i] for i in rows]), self.label_names)
            _tsne_png(embeddings[rows], categories, self.output_dir / "tsne.png", self.seed)
            logger.info("t-SNE of %d labelled embeddings written to %s", len(rows), self.output_dir / "tsne.png")
