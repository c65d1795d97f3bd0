"""Write the HybridMedNet bundles from one description, so the four variants never drift apart.

Each bundle under ``bundles/`` stays self-contained (its own configs, metadata, model card); this script is the one
place they are described. The configs are the chest X-ray DenseNet121 bundle's (the zoo's template) with the
network replaced by :class:`medzoo.networks.HybridMedNet` and the HybridMedNet training options added: linear warmup +
cosine schedule per iteration, gradient accumulation, early stopping, the hierarchical head and its loss weights.
Parameters and MACs are counted here; CPU latency and AUROC come from ``docs/hybridmednet_comparison.json``, written
by ``benchmarks/hybridmednet_compare.py``, when it exists.

Usage (from the repository root)::

    python scripts/hybridmednet_bundles.py            # (re)write the four bundles
    python -m medzoo.cli index                        # then refresh zoo_index.json
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import timm
from medzoo.cards import with_metadata_sections
from medzoo.fileio import atomic_write_text
from medzoo.networks.complexity import count_macs, count_parameters
from medzoo.networks.hybridmednet import BACKBONES, VARIANTS, create_hybridmednet
from medzoo.paths import BUNDLES_DIR, REPO_ROOT
from medzoo.zoo import Bundle

TEMPLATE = "cxr14_densenet121_classification"
COMPARISON_FILE = REPO_ROOT / "docs" / "hybridmednet_comparison.json"
INPUT_SHAPE = [1, 1, 224, 224]
#: Release history of every HybridMedNet bundle, newest first; the first key is the version written.
CHANGELOG: dict[str, str] = {
    "0.3.2": "eager inference runs a forward per core; EfficientNetV2-S batch 4; multi-GPU exit barrier",
    "0.3.1": "decode grayscale PNGs with medzoo.cxr.png (new required packages: isal, numba)",
    "0.3.0": "resize images while reading them; inputs differ slightly from earlier versions",
    "0.2.1": "inference runs the network on plain tensors (PlainTensorInferer)",
    "0.2.0": "batch-normalise pooled features in the head (0.1.0 weights do not load)",
    "0.1.0": "first release: HybridMedNet ({backbone}) for the 14 ChestX-ray14 findings",
}
VERSION = next(iter(CHANGELOG))

#: bundle name -> (variant of medzoo.networks.hybridmednet.VARIANTS, role in the zoo)
BUNDLES: dict[str, tuple[str, str]] = {
    "cxr14_hybridmednet_convnext_base_classification": ("general", "general use"),
    "cxr14_hybridmednet_efficientnetv2_s_classification": ("fast", "fast deployment"),
    "cxr14_hybridmednet_swin_base_classification": ("high_accuracy", "highest capacity"),
    "cxr14_hybridmednet_convnext_tiny_classification": ("low_resource", "low-resource devices"),
}

#: bundle name -> eager inference's batch_size and num_workers, and the report of the --tune run they come from
#: (`medzoo benchmark <bundle> --tune --tune_backend torch --batch_sizes ...` of 0.3.2). The reports hold the
#: figures; every bundle runs a single-threaded forward per core at once (the template's
#: ConcurrentRuns).
EAGER_DEFAULTS: dict[str, dict] = {
    "cxr14_hybridmednet_convnext_base_classification": {"batch_size": 2, "num_workers": 1, "tuned_in": "benchmark.md"},
    "cxr14_hybridmednet_efficientnetv2_s_classification": {"batch_size": 4, "num_workers": 2,
                                                           "tuned_in": "benchmark_tuning_torch.md"},
    "cxr14_hybridmednet_swin_base_classification": {"batch_size": 2, "num_workers": 1, "tuned_in": "benchmark.md"},
    "cxr14_hybridmednet_convnext_tiny_classification": {"batch_size": 2, "num_workers": 1, "tuned_in": "benchmark.md"},
}

ATTENTION_TEXT = {
    "none": "no extra attention",
    "cbam": "CBAM (channel + spatial attention) on each scale",
    "mhsa": "multi-scale multi-head self-attention on each scale",
    "cross_scale": "cross-scale attention (each scale queries the other three)",
}

# Config ids every HybridMedNet bundle adds to the template (training options, documented in the model card).
TRAINING_OPTIONS = {
    "pretrained": None,
    "hierarchical": False,
    "warmup_epochs": 1,
    "accumulation_steps": 1,
    "early_stop_patience": 0,
    "early_stop_min_delta": 0.0,
    "fine_weight": 1.0,
    "coarse_weight": 0.5,
    "consistency_weight": 0.1,
}

NETWORK_DEF = {
    "_target_": "medzoo.networks.HybridMedNet",
    "backbone": "@backbone",
    "attention": "@attention",
    "neck": "@neck",
    "in_channels": "@in_channels",
    "num_classes": "$len(@labels)",
    "img_size": "@spatial_size",
    "hierarchical": "@hierarchical",
}

SET_EARLY_STOP_TRAINER = (
    "$[h.set_trainer(@train#trainer) for h in @validate#handlers if isinstance(h, monai.handlers.EarlyStopHandler)]"
)


def _variant_ids(variant: str) -> dict:
    options = {"neck": "project", **VARIANTS[variant]}
    return {"backbone": options["backbone"], "attention": options["attention"], "neck": options["neck"]}


def _insert_after(config: dict, after: str, items: dict) -> dict:
    """A copy of ``config`` with ``items`` inserted after key ``after`` (keeps the config readable top-down)."""
    out = {}
    for key, value in config.items():
        out[key] = value
        if key == after:
            out.update(items)
    return out


def _before_last(run: list[str], step: str) -> list[str]:
    """``run`` with ``step`` inserted before its last entry: after the setup steps (seed, process group), before the
    engine runs."""
    return [*run[:-1], step, run[-1]]


def train_config(template: dict, name: str, variant: str) -> dict:
    config = copy.deepcopy(template)
    config = _insert_after(config, "labels", _variant_ids(variant))
    config = _insert_after(config, "focal_gamma", TRAINING_OPTIONS)
    config["network_def"] = {**NETWORK_DEF, "pretrained": "@pretrained"}
    config["loss"] = {
        "_target_": "medzoo.networks.hybridmednet.HybridMedNetLoss",
        "pos_weight": "@pos_weight",
        "gamma": "@focal_gamma",
        "coarse_groups": "$medzoo.networks.hybridmednet.coarse_group_indices(labels=@labels) if @hierarchical else None",
        "fine_weight": "@fine_weight",
        "coarse_weight": "@coarse_weight",
        "consistency_weight": "@consistency_weight",
    }
    config["lr_scheduler"] = {
        "_target_": "monai.optimizers.WarmupCosineSchedule",
        "optimizer": "@optimizer",
        "warmup_steps": "$@warmup_epochs * len(@train#dataloader)",
        "t_total": "$@max_epochs * len(@train#dataloader)",
    }
    scheduler_handler = config["train"]["handlers"][0]
    assert scheduler_handler["_target_"] == "LrScheduleHandler", scheduler_handler
    scheduler_handler.update({"epoch_level": False, "print_lr": False})
    # the head's batch norm cannot train on a single image: drop a last batch of exactly one
    config["train"]["dataloader"]["drop_last"] = "$len(@train#dataset) % @batch_size == 1"
    config["train"]["inferer"] = {"_target_": "medzoo.networks.hybridmednet.HybridMedNetInferer", "return_coarse": "@hierarchical"}
    config["train"]["trainer"]["accumulation_steps"] = "@accumulation_steps"
    config["validate"]["handlers"].append({
        "_target_": "EarlyStopHandler",
        "_disabled_": "$@early_stop_patience < 1",
        "patience": "$max(1, @early_stop_patience)",
        "score_function": "$monai.handlers.stopping_fn_from_metric('val_mean_auroc')",
        "trainer": None,
        "min_delta": "@early_stop_min_delta",
        "epoch_level": True,
    })
    config["run"] = _before_last(config["run"], SET_EARLY_STOP_TRAINER)
    return config


def inference_config(template: dict, name: str, variant: str) -> dict:
    config = copy.deepcopy(template)
    config = _insert_after(config, "labels", {**_variant_ids(variant), "hierarchical": False})
    config["network_def"] = dict(NETWORK_DEF)
    # eager inference keeps the template's run per core (ConcurrentRuns) with each bundle's own batch and workers
    config["batch_size"], config["num_workers"] = (EAGER_DEFAULTS[name][k] for k in ("batch_size", "num_workers"))
    gradcam = [h for h in config["handlers"] if h["_target_"] == "medzoo.handlers.GradCAMSaver"]
    assert len(gradcam) == 1, config["handlers"]
    gradcam[0]["target_layer"] = "fusion"
    return config


def multi_gpu_config(template: dict) -> dict:
    config = copy.deepcopy(template)
    # every rank runs early stopping (the validation metric is synchronised), so all ranks stop at the same epoch
    config["validate#evaluator#val_handlers"] = (
        "$[h for h in @validate#handlers if isinstance(h, monai.handlers.EarlyStopHandler)] "
        "if dist.get_rank() > 0 else @validate#handlers"
    )
    config["run"] = _before_last(config["run"], SET_EARLY_STOP_TRAINER)
    return _insert_after(config, "train#dataloader#shuffle",
                         {"train#dataloader#drop_last": "$len(@train#sampler) % @batch_size == 1"})


def comparison() -> dict:
    """Rows of ``docs/hybridmednet_comparison.json`` by variant, or {} if the comparison has not been run."""
    if not COMPARISON_FILE.is_file():
        return {}
    data = json.loads(COMPARISON_FILE.read_text())
    return {"setup": data["setup"], "rows": {row["variant"]: row for row in data["rows"]}}


def performance(variant: str, macs: int, parameters: int, measured: dict) -> dict:
    row = measured.get("rows", {}).get(variant, {})
    return {
        "parameters": parameters,
        "macs": macs,
        "macs_input_shape": INPUT_SHAPE,
        "cpu_latency_ms_batch1": row.get("latency_ms"),
        "cpu_latency_setup": measured["setup"]["latency"] if row else "not measured yet: run benchmarks/hybridmednet_compare.py",
    }


def recorded_eval_metrics(name: str) -> dict:
    """The ``eval_metrics`` recorded in bundle ``name`` (a measurement of that bundle: kept), or {} for a new one."""
    meta_file = BUNDLES_DIR / name / "configs" / "metadata.json"
    return json.loads(meta_file.read_text()).get("eval_metrics", {}) if meta_file.is_file() else {}


def metadata(template: dict, variant: str, role: str, perf: dict, eval_metrics: dict) -> dict:
    meta = copy.deepcopy(template)
    ids = _variant_ids(variant)
    attention = ATTENTION_TEXT[ids["attention"]]
    meta["version"] = VERSION
    meta["changelog"] = {v: text.format(backbone=ids["backbone"], attention=attention) for v, text in CHANGELOG.items()}
    meta["required_packages_version"] = {**meta["required_packages_version"], "timm": timm.__version__}
    meta["name"] = f"Chest X-ray 14-finding classification (HybridMedNet, {ids['backbone']}, {role})"
    meta["description"] = (
        f"HybridMedNet with a timm {ids['backbone']} backbone at 4 scales, {attention}, softmax-weighted fusion of the "
        "scales and an average+max pooled, batch-normalised MLP head predicting the probability of each of the 14 NIH ChestX-ray14 "
        "findings. Research model, not cleared for clinical use."
    )
    meta["references"] = [
        "Wang X. et al. ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks. CVPR 2017",
        "Woo S. et al. CBAM: Convolutional Block Attention Module. ECCV 2018",
        "Liu Z. et al. A ConvNet for the 2020s. CVPR 2022",
        "Liu Z. et al. Swin Transformer: Hierarchical Vision Transformer using Shifted Windows. ICCV 2021",
        "Tan M., Le Q. EfficientNetV2: Smaller Models and Faster Training. ICML 2021",
        "Lin T.-Y. et al. Feature Pyramid Networks for Object Detection. CVPR 2017",
    ]
    meta["weights"] = {
        "status": "init",
        "description": "No trained weights are shipped. models/model.pt is written by training (configs/train.json) or "
        "as deterministic initial weights (medzoo init-weights). A local timm checkpoint of the backbone can "
        "initialise training (--pretrained <file>).",
    }
    meta["eval_metrics"] = eval_metrics
    meta["performance"] = perf
    return meta


def _table(measured: dict) -> str:
    if not measured:
        return ("Not measured yet. `python benchmarks/hybridmednet_compare.py` measures parameters, MACs, CPU latency "
                "and the synthetic-data AUROC of every variant after the same short training and writes "
                "`docs/hybridmednet_comparison.md`; rerun this generator afterwards to copy the figures here.")
    md = (REPO_ROOT / "docs" / "hybridmednet_comparison.md").read_text().strip()
    return md.split("\n", 1)[1].strip() if md.startswith("#") else md


def _eager_defaults_text(name: str) -> str:
    defaults = EAGER_DEFAULTS[name]
    workers = f"{defaults['num_workers']} loader worker" + "s" * (defaults["num_workers"] != 1)
    report = defaults["tuned_in"]
    return (f"This bundle's `--tune --tune_backend torch` grid ([`{report}`]({report})) measured batch "
            f"{defaults['batch_size']} with {workers} against its other cells and both thread layouts.")


def readme(name: str, variant: str, role: str, perf: dict, measured: dict) -> str:
    ids = _variant_ids(variant)
    attention = ATTENTION_TEXT[ids["attention"]]
    c = f"bundles/{name}/configs"
    others = ", ".join(f"`{n}`" for n in BUNDLES if n != name)
    return f"""# Chest X-ray 14-finding classification: HybridMedNet ({ids['backbone']}, {role})

> **Research model, not for clinical use.** It is not a medical device, has not been validated on patients, and must
> not be used for diagnosis or patient management.

## Overview
HybridMedNet predicts, for a frontal chest radiograph, the probability of each of the 14 NIH ChestX-ray14 findings
(Atelectasis, Cardiomegaly, Effusion, Infiltration, Mass, Nodule, Pneumonia, Pneumothorax, Consolidation, Edema,
Emphysema, Fibrosis, Pleural_Thickening, Hernia), independently (multi-label, sigmoid outputs).

This bundle is the **{role}** variant (`{variant}` in `medzoo.networks.hybridmednet.VARIANTS`):

| part | this bundle | config id |
|---|---|---|
| backbone | timm `{ids['backbone']}`, `features_only`, 4 scales (strides 4, 8, 16, 32), 1 input channel | `backbone` |
| neck | {'1x1 convolution of each scale to 256 channels' if ids['neck'] == 'project' else 'feature pyramid network'} | `neck` |
| attention | {attention} | `attention` |
| fusion | every scale resized to the finest, projected (1x1), summed with softmax-normalised learned weights | - |
| head | average + max pooling, batch norm, MLP (512 hidden), 14 logits; optional hierarchical head | `hierarchical` |

Parameters: {perf['parameters']:,}; multiply-accumulates at 1x1x224x224: {perf['macs'] / 1e9:.2f} G (counted by
`medzoo.networks.complexity.count_macs`, `torch.utils.flop_counter`).

Other variants are one override away: `--backbone` takes any of resnet50, convnext_tiny/small/base/large,
swin_tiny/small/base, efficientnetv2_s/m/l; `--attention` takes none, cbam, mhsa (multi-scale multi-head
self-attention per scale), cross_scale; `--neck fpn` gives the classic ResNet + FPN path (with `--backbone resnet50
--attention cbam`). Swin backbones are built for one input size: `img_size` follows `spatial_size`. Vision Mamba
(`vim_tiny`, `vim_small`) is **not implemented**: asking for it raises an error; nothing is substituted. The sibling
bundles are {others}.

## Weights: what is in this bundle
**No trained weights are shipped** (metadata `weights.status` is `init`). `models/model.pt` comes from training
(`configs/train.json`) or, for plumbing tests only, deterministic untrained weights (`medzoo init-weights {name}`).

Pretrained backbones cannot be downloaded by the bundle. Give a local timm checkpoint of the full model instead:
`--pretrained /path/to/{BACKBONES[ids['backbone']].timm_name}.safetensors` (or `.pt`/`.pth`; a state dict, possibly under `state_dict` or
`model`). It is read by `medzoo.weights` (no pickled code runs), every backbone tensor must be present with its shape
(an ImageNet 3-channel stem is summed to 1 channel), and a checkpoint of another architecture is refused. Asking for
hub weights (`pretrained=True`, or a name that is not a file) is an error.

## Data and preprocessing
As in `cxr14_densenet121_classification`: `configs/sample_data.json` writes synthetic chest-X-ray-like phantoms in the
real NIH layout and `sample_data/datalist.json`; `medzoo.cxr.datasets.prepare_nih` / `prepare_chexpert` prepare the
real data sets (patient-wise splits; CheXpert labels mapped by name, unknown labels ignored by loss and metric).
Images (PNG, JPEG, DICOM) are read by `medzoo.cxr.transforms.LoadChestXRayd` and resized to `spatial_size` (224x224)
as they are read (box filter), then scaled to [0, 1] (preset `zoo`, 1 channel).

## Training
| setting | default | config id |
|---|---|---|
| loss | BCE with logits, per-class `pos_weight`, focal term with `focal_gamma` > 0 | `loss`, `pos_weight`, `focal_gamma` |
| hierarchical head | off; on: 3 coarse groups (lung parenchyma, pleura, heart and chronic) + 14 fine, fine head reads the coarse logits | `hierarchical` (set it for inference too) |
| loss weights | fine 1.0, coarse 0.5, consistency 0.1 (coarse probability vs its group's most likely finding) | `fine_weight`, `coarse_weight`, `consistency_weight` |
| optimiser | AdamW, lr 3e-4, weight decay 1e-5 | `optimizer`, `learning_rate` |
| schedule | linear warmup for 1 epoch, then cosine to 0, stepped every iteration (`monai.optimizers.WarmupCosineSchedule`) | `lr_scheduler`, `warmup_epochs` |
| gradient accumulation | 1 (off); n sums the gradients of n batches per optimiser step | `accumulation_steps` |
| early stopping | off (0); n stops after n validations without a mean AUROC better by more than `early_stop_min_delta` | `early_stop_patience`, `early_stop_min_delta` |
| mixed precision | on when CUDA is available, never on CPU | `amp` |
| batch | 16, 2 loader workers, cached; a last batch of 1 image is dropped (the head's batch norm needs 2) | `batch_size`, `num_workers`, `cache_rate` |
| checkpoint | best validation mean AUROC -> `models/model.pt` | `validate#handlers` |

Class imbalance: `--pos_weight '$medzoo.data.positive_class_weights(@datalist)'`.

## Input and output
- input `image`: (1, 224, 224) float32 in [0, 1];
- output `pred`: 14 probabilities in the label order above.

Inference writes `eval/predictions.csv` (`file`, then one column per finding); unusable inputs are listed in
`eval/errors.csv` with the reason while the others are predicted. `--gradcam True` writes Grad-CAM overlays of the
fused feature map (`fusion`) for the findings >= `gradcam_threshold` (0.5), at the input's resolution, listed in
`eval/gradcam/gradcam.csv` (an input with no finding at the threshold gets no overlay, and a row saying so).

## Commands
From the repository root (or this folder).

```bash
python -m monai.bundle run --config_file {c}/sample_data.json
python -m monai.bundle run --config_file {c}/train.json
python -m monai.bundle run --config_file "['{c}/train.json','{c}/demo.json']"     # short CPU demo
torchrun --standalone --nproc_per_node=2 -m monai.bundle run --config_file "['{c}/train.json','{c}/multi_gpu_train.json']"
python -m monai.bundle run --config_file "['{c}/train.json','{c}/evaluate.json']"
python -m monai.bundle run --config_file {c}/inference.json --input /path/to/images
python -m monai.bundle run --config_file {c}/train.json --backbone swin_tiny --attention mhsa --hierarchical True
python -m monai.bundle ckpt_export network_def --filepath models/model.ts --ckpt_file models/model.pt \\
    --meta_file configs/metadata.json --config_file configs/inference.json   # inside the bundle folder
medzoo verify {name}
```

## Export
TorchScript (`ckpt_export`, scripting) works for every backbone and attention and is checked by the zoo verification
(`tests/test_bundles.py`): the scripted model gives the eager model's output.

## Comparison of the variants
{_table(measured)}

## MONAI Label
The bundle loads in MONAI Label's `monaibundle` app like `cxr14_densenet121_classification` (monailabel 0.8.5 in an
environment of its own; details and how to expose the server beyond 127.0.0.1 in the repository README's MONAI Label
section); `/infer` returns the same probabilities as `configs/inference.json`, checked against a running server by
`tests/test_monailabel.py`, which runs these commands in the default suite:

```bash
medzoo monailabel setup {name} --env monailabel-env --app monailabel-app
medzoo monailabel start --env monailabel-env --app monailabel-app --studies /path/to/studies --port 8000
```

## Speed on CPU
[`benchmark.md`](benchmark.md) holds this bundle's figures from `medzoo benchmark {name}` (raw numbers in
`benchmark.json`, the summary in `zoo_index.json`, which `medzoo select` reads): the bare network in PyTorch eager,
ONNX Runtime fp32 and ONNX Runtime int8 (unless the command in its first line says `--int8 False`) at batch 1 and at
its best batch; end-to-end inference from files on disk to written outputs, over the whole run and in steady state,
against the bare network at the same batch size; one training epoch and its share of time spent waiting for data.
They come from one run on a shared 2-core CPU: compare rows with each other, not with other machines. No file there
means not measured yet.

Eager inference (`configs/inference.json`) runs the network through `medzoo.inferers.ConcurrentRuns`
(`torch_concurrent_runs: 0`): each batch is split into one chunk per core, and each chunk runs on its own thread with
one PyTorch thread, at the same time. With a GPU the config runs one forward.
{_eager_defaults_text(name)}
On other hardware, set `--batch_size`, `--num_workers` and `--torch_concurrent_runs` from your own `--tune` run.

## Limitations
- No trained weights ship with the bundle; synthetic-data figures say the pipeline learns, not how well a model
  does on radiographs.
- NIH ChestX-ray14 labels were mined from reports by NLP and are noisy; frontal views only.
- Vision Mamba backbones are not implemented.
- **Not for clinical use.**

## References
- Wang X. et al. ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks. CVPR 2017.
- Woo S. et al. CBAM: Convolutional Block Attention Module. ECCV 2018.
- Liu Z. et al. A ConvNet for the 2020s. CVPR 2022.
- Liu Z. et al. Swin Transformer: Hierarchical Vision Transformer using Shifted Windows. ICCV 2021.
- Tan M., Le Q. EfficientNetV2: Smaller Models and Faster Training. ICML 2021.
- Lin T.-Y. et al. Feature Pyramid Networks for Object Detection. CVPR 2017.

## License
Apache-2.0 for the bundle's code and configs (see `LICENSE`). Data sets and third-party weights keep their own terms.
"""


MODELS_README = """# models/

No weights are stored in git and none are released for this bundle yet (metadata `weights.status`: `init`).
`model.pt` (a plain state dict of `network_def`) appears here when you train
(`python -m monai.bundle run --config_file configs/train.json`) or write deterministic **untrained** weights for
plumbing tests (`medzoo init-weights {name}`). `model.ts` appears after `ckpt_export`.
"""


def render(name: str, perf: dict | None = None) -> dict[str, str]:
    """The text of every file of bundle ``name``: relative path -> content. ``perf`` is counted when not given."""
    variant, role = BUNDLES[name]
    template = Bundle(TEMPLATE)
    read = lambda f: json.loads(template.config_path(f).read_text())
    if perf is None:
        network = create_hybridmednet(variant, img_size=INPUT_SHAPE[2:])
        perf = performance(variant, count_macs(network, INPUT_SHAPE), count_parameters(network), comparison())
    dump = lambda d: json.dumps(d, indent=4) + "\n"
    meta = metadata(template.metadata, variant, role, perf, recorded_eval_metrics(name))
    files = {
        "configs/train.json": dump(train_config(read("train.json"), name, variant)),
        "configs/inference.json": dump(inference_config(read("inference.json"), name, variant)),
        "configs/multi_gpu_train.json": dump(multi_gpu_config(read("multi_gpu_train.json"))),
        "configs/evaluate.json": dump(read("evaluate.json")),
        "configs/sample_data.json": dump(read("sample_data.json")),
        "configs/quick.json": dump(read("quick.json")),
        "configs/demo.json": dump(read("demo.json")),
        "configs/metadata.json": dump(meta),
        "configs/logging.conf": template.config_path("logging.conf").read_text(),
        "docs/README.md": with_metadata_sections(readme(name, variant, role, perf, comparison()), meta, name),
        "models/README.md": MODELS_README.format(name=name),
        "LICENSE": (template.root / "LICENSE").read_text(),
    }
    return files


def write(name: str, bundles_dir: Path = BUNDLES_DIR) -> Path:
    root = bundles_dir / name
    for relative, text in render(name).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / relative, text)
    return root


def main() -> None:
    for name in BUNDLES:
        print(f"wrote {write(name)}")


if __name__ == "__main__":
    main()
