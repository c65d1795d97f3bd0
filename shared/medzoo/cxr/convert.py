"""Convert public chest X-ray DenseNet-121 checkpoints into weights of the zoo's bundle network.

The bundle network is ``monai.networks.nets.DenseNet121(spatial_dims=2, in_channels=C, out_channels=14)`` predicting
logits in :data:`~medzoo.cxr.labels.CHEXNET_LABELS` order (apply a sigmoid for probabilities). Two sources:

- CheXNet (arnoweng/CheXNet, Rajpurkar et al. 2017, https://arxiv.org/abs/1711.05225): a torchvision DenseNet-121
  wrapped as ``.densenet121`` in ``nn.DataParallel``; keys ``module.densenet121.features...`` with the old torchvision
  dense-layer names (``denselayer1.norm.1.weight``), classifier ``Sequential(Linear(1024, 14), Sigmoid())`` saved as
  ``classifier.0.weight`` [14, 1024]; 3-channel ImageNet-normalised input. The checkpoint is a dict holding the
  weights under ``"state_dict"``.
- torchxrayvision (Cohen et al. 2022, https://arxiv.org/abs/2111.00595): ``xrv.models.DenseNet`` state dict with
  unprefixed keys, ``features.conv0.weight`` [64, 1, 7, 7], ``classifier.weight`` [18, 1024] in
  :data:`~medzoo.cxr.labels.XRV_LABELS` order; 1-channel input in [-1024, 1024]. Without pretrained weights
  ``xrv.models.DenseNet`` returns raw logits (``apply_sigmoid=False``, no ``op_threshs``); with them its state dict
  also holds the ``op_threshs`` buffer [18] with which it calibrates its probabilities (``op_norm``). That is no
  network weight: :func:`xrv_op_threshs` returns it per bundle label, and a converted bundle applies it after the
  sigmoid (:class:`medzoo.cxr.source_preprocess.OperatingPointNormd`).

Both converters are strict: a key that is unexpected, missing or of the wrong shape raises a :class:`ConversionError`
(a ``ValueError``) whose one-line message lists every such key; no weight is ever skipped or left at its random
initialisation. Only ``num_batches_tracked`` may be absent (checkpoints saved before PyTorch 0.4.1 have none); like
``BatchNorm2d`` loading such a checkpoint, it is set to 0, which does not change inference.

Example::

    from monai.networks.nets import DenseNet121
    from medzoo.cxr.convert import INPUT_PRESETS, load_chexnet_checkpoint

    net = DenseNet121(spatial_dims=2, in_channels=INPUT_PRESETS["chexnet"]["in_channels"], out_channels=14)
    net.load_state_dict(load_chexnet_checkpoint("model.pth.tar"))
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence

import torch
from monai.networks.nets import DenseNet121

from medzoo.cxr.labels import CHEXNET_LABELS, XRV_LABELS
from medzoo.cxr.transforms import INPUT_PRESETS
from medzoo.errors import UserError
from medzoo.weights import load_weights

__all__ = [
    "ConversionError",
    "read_state_dict",
    "chexnet_to_monai",
    "xrv_to_monai",
    "load_chexnet_checkpoint",
    "load_xrv_checkpoint",
    "xrv_op_threshs",
]


class ConversionError(UserError, ValueError):
    """A checkpoint that cannot be converted: the one-line message names the file or keys and what to do."""


# A dense layer in either torchvision naming: old ``denselayer1.norm.1.weight`` (CheXNet) or new ``norm1.weight``.
_DENSE_LAYER_KEY = re.compile(r"^(features\.denseblock\d+\.denselayer\d+)\.(norm|conv)\.?([12])\.(\w+)$")
# Keys that torchvision and MONAI name alike.
_SAME_NAME_KEY = re.compile(r"^features\.(?:conv0|norm0|norm5|transition\d+\.(?:norm|conv))\.\w+$")
_MONAI_CLASSIFIER = "class_layers.out."
_MAX_LISTED = 10


@functools.cache
def _monai_shapes(in_channels: int, out_channels: int) -> dict[str, torch.Size]:
    """Key -> shape of the bundle network's state dict, built on the meta device (allocates no weights)."""
    with torch.device("meta"):
        net = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=out_channels)
    return {k: v.shape for k, v in net.state_dict().items()}


def _strip_prefixes(key: str, prefixes: Sequence[str]) -> str:
    """Remove each of ``prefixes``, in order, from the start of ``key`` when it is there."""
    for prefix in prefixes:
        key = key.removeprefix(prefix)
    return key


def _listed(title: str, items: list[str]) -> str:
    """One section of a conversion error, on one line: a title, the count, then at most ``_MAX_LISTED`` items."""
    shown = items[:_MAX_LISTED]
    more = f", ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"{title} ({len(items)}): " + ", ".join(shown) + more


def _to_monai(
    state_dict: Mapping[str, torch.Tensor],
    prefixes: Sequence[str],
    classifier_prefix: str,
    in_channels: int,
    out_channels: int,
    source: str,
    adapt_classifier: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Rename a torchvision-style DenseNet-121 state dict into the bundle network's keys and check it completely.

    Args:
        state_dict: source keys -> tensors.
        prefixes: prefixes removed, in order, from the source keys (e.g. ``"module."``); errors name the keys unchanged.
        classifier_prefix: source prefix of the final linear layer, e.g. ``"classifier.0."``.
        in_channels: input channels of the bundle network.
        out_channels: outputs of the bundle network.
        source: source name used in error messages.
        adapt_classifier: optional ``(source_key, tensor) -> tensor`` applied to the classifier's weight and bias
            before the shape check (e.g. to select label rows); a ``ValueError`` it raises is listed as a wrong shape.

    Returns:
        the bundle network's state dict, in its key order.

    Raises:
        ConversionError: listing every unexpected, duplicated, wrongly shaped or missing key.
    """
    expected = _monai_shapes(in_channels, out_channels)
    converted: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}  # MONAI key -> source key it came from
    unexpected, duplicated, wrong_shape = [], [], []
    for source_key, value in state_dict.items():
        key = _strip_prefixes(source_key, prefixes)
        dense = _DENSE_LAYER_KEY.match(key)
        is_classifier = key in (classifier_prefix + "weight", classifier_prefix + "bias")
        if dense:
            new_key = f"{dense[1]}.layers.{dense[2]}{dense[3]}.{dense[4]}"
        elif _SAME_NAME_KEY.match(key):
            new_key = key
        elif is_classifier:
            new_key = _MONAI_CLASSIFIER + key[len(classifier_prefix) :]
        else:
            new_key = None
        if new_key not in expected:
            unexpected.append(source_key)
            continue
        if new_key in origin:
            duplicated.append(f"{origin[new_key]} and {source_key} (both become {new_key})")
            continue
        origin[new_key] = source_key
        if is_classifier and adapt_classifier is not None:
            try:
                value = adapt_classifier(source_key, value)
            except ValueError as e:
                wrong_shape.append(f"{source_key}: {e}")
                continue
        if value.shape != expected[new_key]:
            wrong_shape.append(f"{source_key}: {tuple(value.shape)}, expected {tuple(expected[new_key])}")
        else:
            converted[new_key] = value
    missing = []
    for key in expected:
        if key in origin:
            continue
        if key.endswith(".num_batches_tracked"):
            converted[key] = torch.tensor(0, dtype=torch.long)
        else:
            missing.append(key)
    if unexpected or duplicated or wrong_shape or missing:
        sections = [
            ("unexpected keys", unexpected),
            ("keys given twice", duplicated),
            ("wrong shapes", wrong_shape),
            ("missing keys (MONAI names)", missing),
        ]
        raise ConversionError(
            f"not a {source} DenseNet-121 state dict: "
            + "; ".join(_listed(title, items) for title, items in sections if items)
            + f" (cannot fill MONAI DenseNet121(spatial_dims=2, in_channels={in_channels}, out_channels={out_channels}))"
        )
    return {key: converted[key] for key in expected}


def chexnet_to_monai(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a CheXNet (arnoweng/CheXNet) state dict into the bundle network's state dict.

    Args:
        state_dict: the checkpoint's ``"state_dict"``: keys ``module.densenet121.features.conv0.weight``
            [64, 3, 7, 7], ``...denselayer1.norm.1.weight`` (old torchvision names; new ``norm1`` names are accepted
            too), ``module.densenet121.classifier.0.weight`` [14, 1024] and ``.bias`` [14]. The ``module.`` and
            ``densenet121.`` prefixes are optional.

    Returns:
        state dict of ``DenseNet121(spatial_dims=2, in_channels=3, out_channels=14)`` whose logits, after a sigmoid,
        equal CheXNet's outputs, in :data:`CHEXNET_LABELS` order; input preset ``INPUT_PRESETS["chexnet"]``.

    Raises:
        ConversionError: listing every unexpected, missing or wrongly shaped key.
    """
    return _to_monai(
        state_dict,
        prefixes=("module.", "densenet121."),
        classifier_prefix="classifier.0.",
        in_channels=INPUT_PRESETS["chexnet"]["in_channels"],
        out_channels=len(CHEXNET_LABELS),
        source="CheXNet",
    )


def _label_rows(labels: Sequence[str], source_labels: Sequence[str]) -> list[int]:
    """Row of each of ``labels`` in ``source_labels``; an empty source name marks an output that was not trained."""
    if isinstance(labels, str) or not labels or len(set(labels)) != len(labels):
        raise ConversionError(f"labels must be a non-empty sequence of distinct names, got {labels!r}")
    trained = [name for name in source_labels if name]
    if len(set(trained)) != len(trained):
        raise ConversionError(f"source_labels names an output twice: {list(source_labels)}")
    absent = [name for name in labels if name not in trained]
    if absent:
        raise ConversionError(
            f"the torchxrayvision weights do not predict {absent}; their trained outputs are {trained}"
        )
    return [list(source_labels).index(name) for name in labels]


_XRV_PREFIXES = ("module.",)
_OP_THRESHS = "op_threshs"


def xrv_to_monai(
    state_dict: Mapping[str, torch.Tensor],
    labels: Sequence[str] = CHEXNET_LABELS,
    source_labels: Sequence[str] = XRV_LABELS,
) -> dict[str, torch.Tensor]:
    """Convert a torchxrayvision ``DenseNet`` state dict into the bundle network's state dict.

    The classifier rows are picked by label name, so the bundle network predicts ``labels`` in their order. The
    ``op_threshs`` buffer of pretrained weights is no network weight and is left out here; read it with
    :func:`xrv_op_threshs`.

    Args:
        state_dict: ``xrv.models.DenseNet(...).state_dict()``: keys ``features.conv0.weight`` [64, 1, 7, 7],
            ``features.denseblockN.denselayerM.norm1.weight``, ..., ``classifier.weight`` [18, 1024] and
            ``classifier.bias`` [18], optionally ``op_threshs`` [18]; an optional ``module.`` prefix is removed.
        labels: output labels of the bundle network, each one of ``source_labels``.
        source_labels: label of each xrv output row, ``model.targets`` of the xrv model (``""`` marks an output the
            weights were not trained for, e.g. in ``densenet121-res224-chex``); default all 18 of :data:`XRV_LABELS`.

    Returns:
        state dict of ``DenseNet121(spatial_dims=2, in_channels=1, out_channels=len(labels))`` whose logits equal
        the xrv logits of ``labels``; input preset ``INPUT_PRESETS["xrv"]``.

    Raises:
        ConversionError: a label is not predicted by the source, or listing every unexpected, missing or wrongly
            shaped key.
    """
    rows = _label_rows(labels, source_labels)
    weights = {k: v for k, v in state_dict.items() if _strip_prefixes(k, _XRV_PREFIXES) != _OP_THRESHS}

    def select_rows(key: str, value: torch.Tensor) -> torch.Tensor:
        """weight [S, 1024] or bias [S] over the S source labels -> the rows of ``labels``."""
        if value.ndim == 0 or value.shape[0] != len(source_labels):
            raise ValueError(f"{tuple(value.shape)}, expected {len(source_labels)} rows, one per source label")
        return value[rows]

    return _to_monai(
        weights,
        prefixes=_XRV_PREFIXES,
        classifier_prefix="classifier.",
        in_channels=INPUT_PRESETS["xrv"]["in_channels"],
        out_channels=len(labels),
        source="torchxrayvision",
        adapt_classifier=select_rows,
    )


def xrv_op_threshs(
    state_dict: Mapping[str, torch.Tensor],
    labels: Sequence[str] = CHEXNET_LABELS,
    source_labels: Sequence[str] = XRV_LABELS,
) -> list[float | None] | None:
    """The operating points (``op_threshs``) of a torchxrayvision state dict for ``labels``, in their order.

    torchxrayvision's pretrained DenseNets calibrate their sigmoid outputs with them (``op_norm``: each label's
    operating point maps to 0.5). ``None`` when the state dict has no ``op_threshs`` (``DenseNet(weights=None)``);
    a label whose operating point is NaN gets ``None`` (torchxrayvision outputs 0.5 for it).

    Raises:
        ConversionError: ``op_threshs`` is not one value per source label, or a label is not predicted.
    """
    rows = _label_rows(labels, source_labels)
    found = [v for k, v in state_dict.items() if _strip_prefixes(k, _XRV_PREFIXES) == _OP_THRESHS]
    if not found or found[0] is None:
        return None
    values = found[0]
    if values.ndim != 1 or values.shape[0] != len(source_labels):
        raise ConversionError(
            f"op_threshs has shape {tuple(values.shape)}, expected ({len(source_labels)},): one "
            "operating point per source label"
        )
    return [None if torch.isnan(values[r]) else float(values[r]) for r in rows]


def read_state_dict(path: str | os.PathLike, sha256: str | None, hint: str = "") -> dict[str, torch.Tensor]:
    """Read a state dict saved directly or nested under ``"state_dict"`` / ``"model"``, without unpickling code.

    ``hint`` is appended to the error when the file cannot be read safely.
    """
    try:
        ckpt = load_weights(path, sha256=sha256)
    except ValueError as e:  # first line only: torch's own explanation of a refused pickle runs over many lines
        raise ConversionError(" ".join(filter(None, [str(e).splitlines()[0], hint]))) from e

    def is_state_dict(obj: object) -> bool:
        return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())

    if is_state_dict(ckpt):
        return dict(ckpt)
    for key in ("state_dict", "model"):
        if isinstance(ckpt, Mapping) and is_state_dict(ckpt.get(key)):
            return dict(ckpt[key])
    entries = sorted(map(str, ckpt))[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
    raise ConversionError(
        f"{path} holds no state dict: expected a mapping of tensors, saved directly or under 'state_dict' or "
        f"'model'; found {entries}"
    )


def load_chexnet_checkpoint(path: str | os.PathLike, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a CheXNet checkpoint (e.g. arnoweng/CheXNet ``model.pth.tar``) and convert it with :func:`chexnet_to_monai`.

    Args:
        path: checkpoint file: ``{"state_dict": ..., "epoch": ..., ...}`` or the bare state dict. It is read with
            ``torch.load(weights_only=True)``, which refuses pickled code.
        sha256: expected hex digest of the file, checked before reading.

    Raises:
        FileNotFoundError: no such file.
        ConversionError: unsafe or unreadable file, no state dict in it, or a key mismatch (see
            :func:`chexnet_to_monai`).
    """
    return chexnet_to_monai(read_state_dict(path, sha256))


def load_xrv_checkpoint(
    path: str | os.PathLike,
    labels: Sequence[str] = CHEXNET_LABELS,
    source_labels: Sequence[str] = XRV_LABELS,
    sha256: str | None = None,
) -> tuple[dict[str, torch.Tensor], list[float | None] | None]:
    """Read a torchxrayvision DenseNet state dict file: (:func:`xrv_to_monai`, :func:`xrv_op_threshs`) of it.

    torchxrayvision downloads its weights as pickled whole models, which are not read here because unpickling runs
    code. Export the state dict once where torchxrayvision is trusted::

        model = xrv.models.DenseNet(weights="densenet121-res224-all")
        torch.save(model.state_dict(), "xrv_densenet121_all.pt")  # model.targets are its source_labels

    Args:
        path: the state dict file, saved directly or nested under ``"state_dict"`` or ``"model"``.
        labels, source_labels: as in :func:`xrv_to_monai`.
        sha256: expected hex digest of the file, checked before reading.

    Returns:
        the bundle network's state dict, and the operating points of ``labels`` (``None`` if the file has none).

    Raises:
        FileNotFoundError: no such file.
        ConversionError: unsafe or unreadable file (e.g. a pickled xrv model), no state dict in it, or a conversion
            error.
    """
    hint = (
        "If this is a weights file downloaded by torchxrayvision (a pickled whole model), export its state dict "
        "first: torch.save(xrv.models.DenseNet(weights=NAME).state_dict(), PATH)"
    )
    state_dict = read_state_dict(path, sha256, hint)
    return (
        xrv_to_monai(state_dict, labels=labels, source_labels=source_labels),
        xrv_op_threshs(state_dict, labels=labels, source_labels=source_labels),
    )
