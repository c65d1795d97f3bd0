"""The files ``medzoo import-model`` writes into a new bundle, from the model folder's ``config.json`` and
``metadata.json``: ``configs/inference.json`` (:func:`inference_config`), ``configs/metadata.json``
(:func:`bundle_metadata`), ``configs/logging.conf`` (:data:`LOGGING_CONF`) and ``docs/README.md`` (:func:`model_card`).

The folder's layout and the checks before any of them is written are in :mod:`medzoo.import_model`.
"""

from __future__ import annotations

import importlib.metadata
import json

import monai
import numpy
import torch

from .monailabel import documented_commands

__all__ = [
    "IMAGE_EXTENSIONS",
    "LOGGING_CONF",
    "RUNTIME_PACKAGES",
    "bundle_metadata",
    "inference_config",
    "model_card",
]

#: Files the imported bundle's inference reads.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Distributions the imported bundle's inference runs on besides MONAI, PyTorch and NumPy: ignite (the evaluator),
#: Pillow (``PILReader``), fire (``python -m monai.bundle``). The vendored ``medzoo`` of a package is not one.
RUNTIME_PACKAGES = ("pytorch-ignite", "pillow", "fire")
#: ``configs/logging.conf`` of the imported bundle: INFO and above to stdout.
LOGGING_CONF = """[loggers]
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


def inference_config(config: dict, net: dict) -> dict:
    """``configs/inference.json``: the PNG/JPEG files of a folder, preprocessed as ``config`` says, through ``net``
    (the ``network_def``) to ``eval/predictions.csv``; failed inputs are reported, not fatal."""
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


def bundle_metadata(name: str, config: dict, source_meta: dict, weights_sha: str, source: str) -> dict:
    """``configs/metadata.json`` of bundle ``name``: the model folder's ``metadata.json`` fields where given, defaults
    saying the model is imported otherwise, the installed versions, the weights' provenance and ``network_data_format``
    from ``config``."""
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


def _installed_versions(distributions: tuple[str, ...]) -> dict[str, str]:
    return {d: importlib.metadata.version(d) for d in distributions}


def _timm_version() -> str:
    import timm

    return timm.__version__


def model_card(name: str, meta: dict, config: dict) -> str:
    """``docs/README.md``: the model, its commands (inference, TorchScript export, MONAI Label) and its limitations."""
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
