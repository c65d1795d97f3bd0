"""ONNX Runtime int8 quantization of an exported network, calibrated on a bundle's sample data passed through the
bundle's own inference preprocessing (used by ``medzoo compress`` and ``medzoo benchmark``)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .export import example_input
from .fileio import atomic_path
from .zoo import Bundle

__all__ = ["QUANTIZATION_METHODS", "calibration_inputs", "quantize_onnx"]

#: ``int8_dynamic``: int8 weights, activations quantized on the fly; ``int8_static``: per-channel int8 weights and
#: uint8 activations (QDQ) calibrated on sample data.
QUANTIZATION_METHODS = ("int8_dynamic", "int8_static")


def calibration_inputs(
    bundle: Bundle,
    count: int = 16,
    dataset_dir: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
) -> Iterator[np.ndarray]:
    """Up to ``count`` network inputs ``[1, C, *spatial_shape]`` (float32) from the bundle's sample data.

    Uses the bundle's own ``inference.json`` dataset and preprocessing on its sample data (``dataset_dir``, default
    the bundle's ``sample_data/``), and its ``prepare_batch`` where it has one (the MI bundle computes its input with a
    frozen motion network, whose weights are in ``ckpt_dir``); inputs that fail to load are skipped; each input is
    centre-cropped/padded to the metadata's input shape.
    """
    from monai.data import list_data_collate
    from monai.transforms import ResizeWithPadOrCrop

    overrides = {"dataset_dir": str(dataset_dir)} if dataset_dir else {}
    overrides |= {"ckpt_dir": str(ckpt_dir)} if ckpt_dir else {}
    parser = bundle.parser("inference.json", **overrides)
    dataset = parser.get_parsed_content("dataset")
    prepare_batch = parser.get_parsed_content("prepare_batch") if "prepare_batch" in parser else None
    target = list(example_input(bundle, batch_size=1).shape[2:])
    fit = ResizeWithPadOrCrop(target)
    yielded = 0
    for i in range(len(dataset)):
        item = dataset[i]
        if item.get("error"):
            continue
        with torch.no_grad():
            image = prepare_batch(list_data_collate([item]), "cpu")[0][0] if prepare_batch else item["image"]
        image = torch.as_tensor(fit(image)).float()
        yield image.unsqueeze(0).numpy()
        yielded += 1
        if yielded >= count:
            return
    if yielded == 0:
        raise ValueError(f"{bundle.name}: no readable calibration input in the bundle's inference dataset")


def quantize_onnx(
    bundle: Bundle,
    fp32_onnx: str | os.PathLike,
    output: str | os.PathLike,
    method: str,
    calibration_count: int = 16,
    dataset_dir: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
) -> Path:
    """Quantize the FP32 ONNX model ``fp32_onnx`` of ``bundle`` with ``method`` (see :data:`QUANTIZATION_METHODS`)
    into ``output``, written atomically; return ``output``.

    ``int8_static`` calibrates on up to ``calibration_count`` :func:`calibration_inputs` of ``dataset_dir`` (default
    the bundle's ``sample_data/``); ``ckpt_dir`` holds the weights of a frozen sub-network the bundle's
    ``prepare_batch`` runs (see :func:`medzoo.weights.write_frozen_init_weights`).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in QUANTIZATION_METHODS:
        raise ValueError(f"unknown quantization method '{method}'; choose one of {QUANTIZATION_METHODS}")
    output = Path(output)
    with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        with atomic_path(output) as tmp:
            if method == "int8_dynamic":
                quantize_dynamic(str(prepared), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
            else:

                class _Reader(CalibrationDataReader):
                    def __init__(self) -> None:
                        self.inputs = (
                            {"image": x} for x in calibration_inputs(bundle, calibration_count, dataset_dir, ckpt_dir)
                        )

                    def get_next(self) -> dict | None:
                        return next(self.inputs, None)

                quantize_static(
                    str(prepared),
                    str(tmp),
                    _Reader(),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                )
    return output
