"""Self-supervised pretraining (SimCLR, as in REMEDIS) and the pieces that turn it into a classifier.

- :mod:`~medzoo.ssl.augment`: two independently augmented views of an image; a random resized crop;
- :mod:`~medzoo.ssl.loss`: NT-Xent on a ``(2B, D)`` batch of projections (MONAI's ``ContrastiveLoss`` underneath);
- :mod:`~medzoo.ssl.lars`: the LARS optimizer and its parameter groups;
- :mod:`~medzoo.ssl.model`: BiT ResNetV2 encoders from timm, the projection head, :class:`SimCLRNet`, the batch
  preparation of the two views, and fine-tuning (checkpoint loading, freezing, zero-initialised logits);
- :mod:`~medzoo.ssl.embeddings`: embedding extraction, the NPY + CSV + t-SNE writer, unlabelled image lists;
- :mod:`~medzoo.ssl.probe`: the linear-probe evaluation.
"""

from . import augment, embeddings, lars, loss, model, probe
from .augment import RandResizedCropd, TwoViewsd
from .embeddings import EmbeddingWriter, extract_embeddings, unlabelled_images
from .lars import LARS, lars_param_groups
from .loss import NTXentLoss
from .model import (
    SimCLRNet,
    TwoViewBatch,
    bit_resnetv2,
    load_simclr_encoder,
    prepare_fine_tuning,
    projection_head,
    set_fine_tune_after_block,
)
from .probe import linear_probe_auroc, run_linear_probe

__all__ = [
    "LARS",
    "EmbeddingWriter",
    "NTXentLoss",
    "RandResizedCropd",
    "SimCLRNet",
    "TwoViewBatch",
    "TwoViewsd",
    "augment",
    "bit_resnetv2",
    "embeddings",
    "extract_embeddings",
    "lars",
    "lars_param_groups",
    "linear_probe_auroc",
    "load_simclr_encoder",
    "loss",
    "model",
    "prepare_fine_tuning",
    "probe",
    "projection_head",
    "run_linear_probe",
    "set_fine_tune_after_block",
    "unlabelled_images",
]
