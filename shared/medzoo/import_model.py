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
``logging.conf``, ``docs/README.md``, ``LICENSE`` (only if the folder has one) and ``models/model.pt``; it is checked
with the zoo verification (metadata schema, network in/out shapes, TorchScript export) before it is moved into place.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path

import monai
import numpy
import torch
from monai.bundle import ConfigParser

from .errors import UserFileExistsError, UserFileNotFoundError, UserValueError
from .monailabel import documented_commands
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
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_LICENSE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md")
_LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""


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


def _inference_config(config: dict, net: dict) -> dict:
    channels, *spatial = config["input_shape"]
    pre = config["preprocessing"]
    mode = "RGB" if channels == 3 else "L"
    transforms = [
        {
            "_target_": "medzoo.io_checks.CheckedLoadImaged",
            "keys": "image",
            "reader": "PILReader",
            "reverse_indexing": False,
            "converter": f"$lambda image: image.convert('{mode}')",
            "ensure_channel_first": True,
            "image_only": True,
        },
        {"_target_": "Resized", "keys": "image", "spatial_size": pre.get("resize", spatial), "mode": "bilinear"},
        {
            "_target_": "ScaleIntensityRanged",
            "keys": "image",
            "a_min": 0.0,
            "a_max": float(pre.get("scale", 255)),
            "b_min": 0.0,
            "b_max": 1.0,
        },
    ]
    if pre.get("normalize"):
        transforms.append(
            {
                "_target_": "NormalizeIntensityd",
                "keys": "image",
                "subtrahend": pre["normalize"]["mean"],
                "divisor": pre["normalize"]["std"],
                "channel_wise": True,
            }
        )
    transforms.append({"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"})
    activation = config.get("activation", "softmax")
    return {
        "imports": ["$import torch", "$import monai", "$import medzoo"],
        "bundle_root": "$medzoo.paths.bundle_root()",
        "ckpt_dir": "$@bundle_root + '/models'",
        "ckpt_path": "$@ckpt_dir + '/model.pt'",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "$@bundle_root + '/sample_data'",
        "input": "$@dataset_dir + '/images'",
        "labels": list(config["class_names"]),
        "spatial_size": list(pre.get("resize", spatial)),
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "batch_size": 4,
        "num_workers": 0,
        "network_def": net,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": transforms},
        "dataset": {
            "_target_": "medzoo.data.GuardedDataset",
            "data": f"$medzoo.data.list_inputs(@input, {list(IMAGE_EXTENSIONS)})",
            "transform": "@preprocessing",
            "placeholder": {"image": f"$torch.zeros({channels}, *@spatial_size)"},
        },
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": "@batch_size",
            "shuffle": False,
            "num_workers": "@num_workers",
        },
        "inferer": {"_target_": "medzoo.inferers.PlainTensorInferer", "inferer": {"_target_": "SimpleInferer"}},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [{"_target_": "Activationsd", "keys": "pred", activation: True}],
        },
        "handlers": [
            {"_target_": "medzoo.handlers.LoadWeights", "path": "@ckpt_path", "network": "@network"},
            {"_target_": "StatsHandler", "iteration_log": False},
            {
                "_target_": "medzoo.handlers.PredictionCSVWriter",
                "output_file": "$@output_dir + '/predictions.csv'",
                "labels": "@labels",
            },
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
        },
        "run": ["$monai.utils.set_determinism(seed=0)", "$@evaluator.run()"],
    }


def _metadata(name: str, config: dict, source_meta: dict, weights_sha: str, source: str) -> dict:
    channels, *spatial = config["input_shape"]
    pre = config["preprocessing"]
    activation = config.get("activation", "softmax")
    version = str(source_meta.get("version", "0.1.0"))
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json",
        "version": version,
        "changelog": {version: "imported from a PyTorch model folder by `medzoo import-model`"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {
            **_installed_versions(RUNTIME_PACKAGES),
            **({"timm": _timm_version()} if config.get("library", "timm") == "timm" else {}),
        },
        "name": source_meta.get("name", f"{config['architecture']} image classifier ({name})"),
        "task": source_meta.get(
            "task", f"{'Multi-label' if activation == 'sigmoid' else 'Multi-class'} image classification"
        ),
        "description": source_meta.get(
            "description", f"{config['architecture']} imported from a PyTorch model folder."
        ),
        "authors": source_meta.get("authors", "unknown (imported)"),
        "copyright": source_meta.get("copyright", "see the source of the imported model"),
        "data_source": source_meta.get("data_source", "unknown (imported model)"),
        "data_type": "png or jpeg",
        "intended_use": source_meta.get("intended_use", "Research only; not for clinical use."),
        "eval_metrics": source_meta.get("eval_metrics", {}),
        "references": source_meta.get("references", []),
        "weights": {
            "status": "converted",
            "source": source,
            "sha256": weights_sha,
            "description": "models/model.pt imported by `medzoo import-model`, checked key by key and shape by shape.",
        },
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": source_meta.get("modality", "n/a"),
                    "num_channels": channels,
                    "spatial_shape": list(pre.get("resize", spatial)),
                    "dtype": "float32",
                    "value_range": [0, float(pre.get("scale", 255))],
                    "is_patch_data": False,
                    "channel_def": {str(c): ("RGB"[c] if channels == 3 else "image") for c in range(channels)},
                }
            },
            "outputs": {
                "pred": {
                    "type": "probabilities",
                    "format": "classes",
                    "modality": "n/a",
                    "num_channels": config["num_classes"],
                    "spatial_shape": [1, config["num_classes"]],
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_onehot": activation == "softmax",
                    "channel_def": {str(i): c for i, c in enumerate(config["class_names"])},
                }
            },
        },
    }


#: Distributions the imported bundle's inference runs on besides MONAI, PyTorch and NumPy: ignite (the evaluator),
#: Pillow (``PILReader``), fire (``python -m monai.bundle``). The vendored ``medzoo`` of a package is not one.
RUNTIME_PACKAGES = ("pytorch-ignite", "pillow", "fire")


def _installed_versions(distributions: tuple[str, ...]) -> dict[str, str]:
    return {d: importlib.metadata.version(d) for d in distributions}


def _timm_version() -> str:
    import timm

    return timm.__version__


def _docs(name: str, meta: dict, config: dict) -> str:
    return (
        f"# {meta['name']}\n\n> **Research model, not for clinical use.** Imported by `medzoo import-model`; "
        "it is not a medical device and its performance is only what its source claims.\n\n"
        f"{meta['description']}\n\n## Model\n- architecture: {config['architecture']} "
        f"({config.get('library', 'timm')}), input {config['input_shape']}, {config['num_classes']} classes: "
        f"{', '.join(config['class_names'])}\n- preprocessing: {json.dumps(config['preprocessing'])}; output "
        f"activation {config.get('activation', 'softmax')}\n- weights: {meta['weights']['source']}\n\n"
        "## Commands\n```bash\n# PNG/JPEG files under sample_data/images, or --input <folder|file>\n"
        "python -m monai.bundle run --config_file configs/inference.json --input <folder>\n"
        "python -m monai.bundle ckpt_export network_def --filepath models/model.ts --ckpt_file models/model.pt "
        "--meta_file configs/metadata.json --config_file configs/inference.json\n```\n"
        "Predictions go to `eval/predictions.csv` (one probability per class).\n\n"
        "## MONAI Label\nServed by MONAI Label's `monaibundle` app (monailabel 0.8.5 in an environment of its own, on "
        "127.0.0.1; see the zoo README's MONAI Label section), with the weights in `models/model.pt`:\n```bash\n"
        + "\n".join(documented_commands(name))
        + "\n```\n\n"
        "## Limitations\nNo training configs: this bundle runs inference only. Its figures, if any, come from the "
        "source's metadata and were not reproduced here.\n"
    )


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
        meta = _metadata(name, config, source_meta, sha256sum(staging / "models" / "model.pt"), source)
        (staging / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
        inference = _inference_config(config, net)
        (staging / "configs" / "inference.json").write_text(json.dumps(inference, indent=4) + "\n")
        (staging / "configs" / "logging.conf").write_text(_LOGGING_CONF)
        (staging / "docs" / "README.md").write_text(_docs(name, meta, config))
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
