"""The whole chain on one cine slice: frozen motion network -> motion features -> MI segmentation -> NIfTI.

Command line (see ``medzoo cmr-infer --help``)::

    medzoo cmr-infer --input_cmr images/cmr/case_000/slice_01.nii.gz \\
        --input_mask labels/cmr/cmr_Myo_mask/case_000.nii.gz --slice_index 1 --output mi.nii.gz \\
        --motion_checkpoint bundles/cmr_mi_segmentation/models/motion_model.pt \\
        --checkpoint bundles/cmr_mi_segmentation/models/model.pt

The networks are built from the MI segmentation bundle's ``inference.json`` (``motion_network_def`` and
``network_def``) and filled strictly from the given checkpoints.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medzoo.cmr.io import read_cine_frames, read_mask_slice
from medzoo.cmr.motion import MotionFeatures, load_frozen
from medzoo.io_checks import read_nifti_header, save_nifti

__all__ = ["MI_BUNDLE", "build_networks", "predict_mi", "run_chain"]

MI_BUNDLE = "cmr_mi_segmentation"
#: The motion network (LocalNet, three downsamplings) needs H and W divisible by this.
_SIZE_MULTIPLE = 8


def build_networks(
    motion_checkpoint: str | os.PathLike, checkpoint: str | os.PathLike, bundle: str | os.PathLike = MI_BUNDLE
) -> tuple[nn.Module, nn.Module]:
    """The frozen motion and MI networks of ``bundle``'s ``inference.json``, loaded strictly from the checkpoints."""
    from medzoo.zoo import Bundle

    parser = Bundle(bundle).parser("inference.json")
    motion = load_frozen(parser.get_parsed_content("motion_network_def"), motion_checkpoint)
    mi = load_frozen(parser.get_parsed_content("network_def"), checkpoint)
    return motion, mi


@torch.no_grad()
def predict_mi(
    cine_path: str | os.PathLike,
    mask_path: str | os.PathLike,
    slice_index: int,
    motion_network: nn.Module,
    mi_network: nn.Module,
    es_frame: int | None = None,
    threshold: float = 0.5,
) -> dict[str, np.ndarray]:
    """Run the chain on one slice.

    Args:
        cine_path: cine slice (T, H, W).
        mask_path: the case's myocardium mask (S, H, W); slice ``slice_index`` restricts the prediction.
        slice_index: which mask slice belongs to ``cine_path``.
        motion_network, mi_network: networks in eval mode, on the same device.
        es_frame: end-systole frame (default T // 2).
        threshold: on the MI probability.

    Returns:
        ``frames`` (2, H, W) [ED, ES] in [0, 1], ``ddf`` (2, H, W) ED -> ES displacement (pixels; y, x),
        ``strain`` (H, W), ``probability`` (H, W), ``myo`` (H, W) and ``mi`` (H, W) uint8 = probability > threshold
        inside the myocardium.
    """
    frames = read_cine_frames(cine_path, es_frame)
    myo = read_mask_slice(mask_path, slice_index)
    if myo.shape != frames.shape[1:]:
        raise ValueError(f"{mask_path}: slice {slice_index} is {myo.shape}, the cine {cine_path} is {frames.shape[1:]}")
    height, width = frames.shape[1:]
    device = next(mi_network.parameters()).device
    x = torch.from_numpy(frames)[None].to(device)
    pad = (0, -width % _SIZE_MULTIPLE, 0, -height % _SIZE_MULTIPLE)
    x = F.pad(x, pad, mode="replicate")
    features = MotionFeatures(motion_network)(x)
    probability = torch.sigmoid(mi_network(features))[0, 0, :height, :width].cpu().numpy()
    features = features[0, :, :height, :width].cpu().numpy()
    mi = ((probability > threshold) & (myo > 0)).astype(np.uint8)
    return {
        "frames": frames,
        "ddf": np.stack([features[2], features[1]]),
        "strain": features[3],
        "probability": probability,
        "myo": myo,
        "mi": mi,
    }


def run_chain(
    input_cmr: str | os.PathLike,
    input_mask: str | os.PathLike,
    slice_index: int,
    output: str | os.PathLike,
    motion_checkpoint: str | os.PathLike,
    checkpoint: str | os.PathLike,
    es_frame: int | None = None,
    threshold: float = 0.5,
    device: str | None = None,
) -> Path:
    """Predict the MI mask of one cine slice and write it to ``output`` (atomically).

    The output is (1, H, W) uint8 in {0, 1} with the cine file's affine and header (its frame axis reduced to one).
    """
    motion, mi = build_networks(motion_checkpoint, checkpoint)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    result = predict_mi(input_cmr, input_mask, slice_index, motion.to(target), mi.to(target), es_frame, threshold)
    reference = read_nifti_header(input_cmr)
    return save_nifti(result["mi"][None], reference.get_best_affine(), output, header=reference)
