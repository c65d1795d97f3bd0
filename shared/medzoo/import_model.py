"""Turning a plain PyTorch image-classification model folder into a verified bundle (``medzoo import-model``).

The folder, as people upload it::

    model.pth       a state dict (read with weights_only=True; ``state_dict_key`` in config.json if nested)
    config.json     {"architecture": "DenseNet121" | "ResNet50" | "EfficientNet-B0" | "EfficientNet-B4" | "ViT" | a
                     timm ViT name such as "vit_tiny_patch16_224",
                     "library": "timm" (default) | "monai" (not for ViT: MONAI's ViT returns a tuple),
                     "input_shape": [C, H, W], "num_classes": N, "class_names": [...],
                     "preprocessing": {"resize": [H, W], "scale": 255, "normalize": {"mean": [...], "std": [...]}},
                     "activation": "softmax" (default) | "sigmoid",
                     "model_kwargs": {...}  (optional, passed to the constructor, e.g. MONAI ViT's patch_size)}
    metadata.json   optional: name, description, authors, references, data_source, intended_use, eval_metrics, ...

The bundle gets ``configs/inference.json`` (PNG/JPEG folder -> ``predictions.csv``), ``metadata.json``,
``logging.conf``, ``docs/README.md`` (written by :mod:`medzoo.import_model_files`), ``LICENSE`` (the folder's, or a
note that none was given) and ``models/model.pt``; it is checked with the zoo verification (metadata schema, network
in/out shapes, TorchScript export) before it is moved into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from .errors import UserFileExistsError, UserFileNotFoundError, UserValueError
from .import_model_files import LOGGING_CONF, bundle_metadata, inference_config, model_card
from .weights import load_state_dict, sha256sum

__all__ = ["ARCHITECTURES", "default_bundle_folder", "import_model", "network_def"]

#: architecture (normalised: lower case, ``-`` -> ``_``) -> library -> ``network_def`` without the shape arguments.
ARCHITECTURES: dict[str, dict[str, dict]] = {
    "densenet121": {"timm": {"model_name": "densenet121"}, "monai": {"_target_": "DenseNet121"}},
    "resnet50": {"timm": {"model_name": "resnet50"}, "monai": {"_target_": "monai.networks.nets.resnet50"}},
    "efficientnet_b0": {
        "timm": {"model_name": "efficientnet_b0"},
        "monai": {"_target_": "EfficientNetBN", "model_name": "efficientnet-b0"},
    },
    "efficientnet_b4": {
        "timm": {"model_name": "efficientnet_b4"},
        "monai": {"_target_": "EfficientNetBN", "model_name": "efficientnet-b4"},
    },
    "vit": {"timm": {"model_name": "vit_base_patch16_224"}},  # MONAI's ViT returns (logits, hidden states)
}
_LICENSE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md")


def _architecture(config: dict) -> tuple[str, str, dict]:
    """(normalised architecture, library, network_def) for the model folder's ``config.json``."""
    name = str(config.get("architecture", "")).lower().replace("-", "_")
    library = config.get("library", "timm")
    timm_vit = name.startswith("vit_") and library == "timm"
    key = "vit" if timm_vit else name
    if key not in ARCHITECTURES:
        raise UserValueError(
            f"unknown architecture '{config.get('architecture')}'; known: DenseNet121, ResNet50, "
            "EfficientNet-B0, EfficientNet-B4, ViT (or a timm ViT name such as vit_tiny_patch16_224)"
        )
    if library not in ARCHITECTURES[key]:
        raise UserValueError(
            f"library '{library}' is not supported for {config['architecture']}; use one of "
            f"{sorted(ARCHITECTURES[key])}"
        )
    return key, library, {**ARCHITECTURES[key][library], **({"model_name": name} if timm_vit else {})}


def network_def(config: dict) -> dict:
    """The bundle's ``network_def`` for a model folder's ``config.json`` (see the module docstring)."""
    key, library, net = _architecture(config)
    channels, *spatial = config["input_shape"]
    classes = config["num_classes"]
    if library == "timm":
        net = {
            "_target_": "timm.create_model",
            **net,
            "pretrained": False,
            "num_classes": classes,
            "in_chans": channels,
        }
        if key == "vit":
            net["img_size"] = spatial
    elif key in ("densenet121", "resnet50"):
        channel_arg = "in_channels" if key == "densenet121" else "n_input_channels"
        out_arg = "out_channels" if key == "densenet121" else "num_classes"
        net = {**net, "spatial_dims": 2, channel_arg: channels, out_arg: classes}
    else:  # MONAI EfficientNet
        net = {**net, "pretrained": False, "spatial_dims": 2, "in_channels": channels, "num_classes": classes}
    return {**net, **config.get("model_kwargs", {})}


def _read_config(folder: Path) -> dict:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UserFileNotFoundError(
            f"{folder} has no config.json; add it (layout: medzoo.import_model) or check the folder"
        )
    config = json.loads(config_file.read_text())
    missing = [
        k for k in ("architecture", "input_shape", "num_classes", "class_names", "preprocessing") if k not in config
    ]
    if missing:
        raise UserValueError(f"{config_file}: missing {missing}")
    channels, *spatial = config["input_shape"]
    if len(spatial) != 2 or channels not in (1, 3):
        raise UserValueError(f"{config_file}: input_shape must be [C, H, W] with C 1 or 3, got {config['input_shape']}")
    if len(config["class_names"]) != config["num_classes"]:
        raise UserValueError(
            f"{config_file}: {config['num_classes']} classes but {len(config['class_names'])} class_names"
        )
    if config.get("activation", "softmax") not in ("softmax", "sigmoid"):
        raise UserValueError(f"{config_file}: activation must be 'softmax' or 'sigmoid'")
    normalize = config["preprocessing"].get("normalize")
    if normalize and not (len(normalize["mean"]) == len(normalize["std"]) == channels):
        raise UserValueError(f"{config_file}: normalize mean/std need {channels} values each")
    return config


def _load_fitting(network: torch.nn.Module, weights: Path, key: str | None) -> dict:
    """The state dict of ``weights`` (``module.`` prefixes stripped) if it fits ``network`` exactly; else a clear error."""
    state = load_state_dict(weights, key=key)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        raise UserValueError(
            f"{weights} does not fit the network: {len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} "
            f"unexpected (e.g. {unexpected[:3]}), {len(mismatched)} of another shape (e.g. {mismatched[:3]})"
        )
    network.load_state_dict(state, strict=True)
    return network.state_dict()


def default_bundle_folder(folder: str | os.PathLike, name: str | None = None) -> Path:
    """Where ``medzoo import-model`` puts a bundle without ``--output_dir``: ``bundles/<name>`` of this zoo, ``name``
    defaulting to the model folder's name, with ``_classification`` appended when it lacks "classification" (MONAI
    Label takes the task from the name)."""
    from .paths import BUNDLES_DIR

    name = name or Path(folder).name
    return BUNDLES_DIR / (name if "classification" in name else f"{name}_classification")


def import_model(
    folder: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    name: str | None = None,
    torchscript: bool = True,
) -> Path:
    """Create a bundle at ``output_dir`` (must not exist; default :func:`default_bundle_folder`) from the model
    ``folder``; return the bundle folder.

    The bundle is verified before it is moved into place: files and disclaimer, metadata schema, network input/output
    shapes, what MONAI Label needs (so ``name`` must contain "classification"), and (``torchscript=True``, the slow part) TorchScript export compared with the eager network.

    Raises:
        medzoo.errors.UserValueError: unknown architecture, inconsistent config, or a state dict that does not fit
            (naming the keys).
        medzoo.errors.UserFileNotFoundError / UserFileExistsError: missing inputs, existing output.
    """
    from .bundle_checks import check_export, check_files, check_metadata, check_net_in_out
    from .monailabel_checks import check_monailabel_ready
    from .zoo import Bundle

    if output_dir is None:
        output_dir = default_bundle_folder(folder, name)
        name = output_dir.name
    folder, output_dir = Path(folder), Path(output_dir)
    name = name or output_dir.name
    if output_dir.name != name:
        raise UserValueError(f"the bundle folder must be named after the bundle: {output_dir.name} != {name}")
    if output_dir.exists():
        raise UserFileExistsError(f"{output_dir} already exists; choose another --name or --output_dir, or remove it")
    config = _read_config(folder)
    weights_file = folder / "model.pth"
    if not weights_file.is_file():
        raise UserFileNotFoundError(f"{folder} has no model.pth; put the state dict there or check the folder")
    source_meta = json.loads((folder / "metadata.json").read_text()) if (folder / "metadata.json").is_file() else {}
    net = network_def(config)
    network = ConfigParser({"network_def": net}).get_parsed_content("network_def")
    state = _load_fitting(network, weights_file, config.get("state_dict_key"))

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=output_dir.parent)) / name
    try:
        (staging / "configs").mkdir(parents=True)
        (staging / "models").mkdir()
        (staging / "docs").mkdir()
        torch.save(state, staging / "models" / "model.pt")
        source = f"{weights_file.name} (sha256 {sha256sum(weights_file)}) from {folder.name}"
        meta = bundle_metadata(name, config, source_meta, sha256sum(staging / "models" / "model.pt"), source)
        (staging / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
        inference = inference_config(config, net)
        (staging / "configs" / "inference.json").write_text(json.dumps(inference, indent=4) + "\n")
        (staging / "configs" / "logging.conf").write_text(LOGGING_CONF)
        (staging / "docs" / "README.md").write_text(model_card(name, meta, config))
        license_file = next((folder / n for n in _LICENSE_NAMES if (folder / n).is_file()), None)
        (staging / "LICENSE").write_text(
            license_file.read_text()
            if license_file
            else "No license was given with the imported model; ask its authors before reuse.\n"
        )
        bundle = Bundle(staging)
        check_files(bundle)
        check_metadata(bundle)
        check_net_in_out(bundle)
        check_monailabel_ready(bundle)
        if torchscript:
            check_export(bundle, staging.parent / "export")
        os.replace(staging, output_dir)
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    return output_dir
