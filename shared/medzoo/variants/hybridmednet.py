"""The HybridMedNet bundles, written from one description so that the variants never drift apart.

Each bundle under ``bundles/`` stays self-contained (its own configs, metadata and model card, as the Hugging Face
Hub and MONAI Label need); this module is the one place they are described, with its data files:

- ``hybridmednet.json``: the template bundle, the release history (one line per version), the wording of each
  attention and of each backbone family (timm, Vision Mamba: card rows, weights, export, limitations, references),
  and per bundle its variant (:data:`medzoo.networks.hybridmednet.VARIANTS`), role, inference ids and, when its
  eager inference defaults were tuned, the report that tuned them (``tuned_in``);
- ``hybridmednet_card.md``: the model card, a :meth:`str.format` template; its "Performance", "Data licence" and
  "Evaluation figures" sections are rendered by :mod:`medzoo.cards`.

The configs are the template's (the chest X-ray DenseNet121 bundle) with the network replaced by
:class:`medzoo.networks.HybridMedNet` and HybridMedNet's training options added: linear warmup + cosine schedule per
iteration, gradient accumulation, early stopping, the hierarchical head and its loss weights. Parameters and MACs are
counted; CPU latency comes from ``docs/hybridmednet_comparison.json`` (``benchmarks/hybridmednet_compare.py``) when it
exists; the ``eval_metrics`` recorded in a bundle are kept. ``python -m medzoo.variants`` writes the bundles.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import timm

from ..cards import render_card
from ..networks.complexity import count_macs, count_parameters
from ..networks.hybridmednet import BACKBONES, VARIANTS, VIM_BACKBONES, create_hybridmednet
from ..paths import BUNDLES_DIR, REPO_ROOT
from ..zoo import Bundle

__all__ = ["BUNDLES", "DATA_FILE", "SPEC", "render", "variant_ids"]

DATA_FILE = Path(__file__).with_name("hybridmednet.json")
CARD_FILE = Path(__file__).with_name("hybridmednet_card.md")
COMPARISON_FILE = REPO_ROOT / "docs" / "hybridmednet_comparison.json"
#: The description of every HybridMedNet bundle (``hybridmednet.json``).
SPEC: dict = json.loads(DATA_FILE.read_text())
#: bundle name -> its entry of :data:`SPEC` (``variant``, ``role``, ``inference``, optional ``tuned_in``).
BUNDLES: dict[str, dict] = SPEC["bundles"]

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


def variant_ids(variant: str) -> dict:
    """The network ids of a named variant (:data:`medzoo.networks.hybridmednet.VARIANTS`): backbone, attention, neck."""
    options = {"neck": "project", **VARIANTS[variant]}
    return {"backbone": options["backbone"], "attention": options["attention"], "neck": options["neck"]}


def backbone_family(backbone: str) -> dict:
    """The :data:`SPEC` ``backbone_families`` entry of ``backbone``: ``vim`` for Vision Mamba, ``timm`` otherwise."""
    return SPEC["backbone_families"]["vim" if backbone in VIM_BACKBONES else "timm"]


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


def train_config(template: dict, variant: str) -> dict:
    """The template's ``train.json`` with HybridMedNet's network, loss, schedule and training options."""
    config = copy.deepcopy(template)
    config = _insert_after(config, "labels", variant_ids(variant))
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
    config["train"]["inferer"] = {
        "_target_": "medzoo.networks.hybridmednet.HybridMedNetInferer",
        "return_coarse": "@hierarchical",
    }
    config["train"]["trainer"]["accumulation_steps"] = "@accumulation_steps"
    config["validate"]["handlers"].append(
        {
            "_target_": "EarlyStopHandler",
            "_disabled_": "$@early_stop_patience < 1",
            "patience": "$max(1, @early_stop_patience)",
            "score_function": "$monai.handlers.stopping_fn_from_metric('val_mean_auroc')",
            "trainer": None,
            "min_delta": "@early_stop_min_delta",
            "epoch_level": True,
        }
    )
    config["run"] = _before_last(config["run"], SET_EARLY_STOP_TRAINER)
    return config


def inference_config(template: dict, variant: str, overrides: dict) -> dict:
    """The template's ``inference.json`` with HybridMedNet's network and the bundle's own ``overrides``
    (e.g. ``batch_size``, ``num_workers``)."""
    config = copy.deepcopy(template)
    config = _insert_after(config, "labels", {**variant_ids(variant), "hierarchical": False})
    config["network_def"] = dict(NETWORK_DEF)
    # eager inference keeps the template's run per core (ConcurrentRuns) with each bundle's own batch and workers
    for key, value in overrides.items():
        if key not in config:
            raise KeyError(
                f"{DATA_FILE.name}: inference override '{key}' is not an id of the template's inference.json"
            )
        config[key] = value
    gradcam = [h for h in config["handlers"] if h["_target_"] == "medzoo.gradcam.GradCAMSaver"]
    assert len(gradcam) == 1, config["handlers"]
    gradcam[0]["target_layer"] = "fusion"
    return config


def multi_gpu_config(template: dict) -> dict:
    """The template's ``multi_gpu_train.json`` with early stopping on every rank."""
    config = copy.deepcopy(template)
    # every rank runs early stopping (the validation metric is synchronised), so all ranks stop at the same epoch
    config["validate#evaluator#val_handlers"] = (
        "$[h for h in @validate#handlers if isinstance(h, monai.handlers.EarlyStopHandler)] "
        "if dist.get_rank() > 0 else @validate#handlers"
    )
    config["run"] = _before_last(config["run"], SET_EARLY_STOP_TRAINER)
    return _insert_after(
        config, "train#dataloader#shuffle", {"train#dataloader#drop_last": "$len(@train#sampler) % @batch_size == 1"}
    )


def comparison() -> dict:
    """Rows of ``docs/hybridmednet_comparison.json`` by variant, or {} if the comparison has not been run."""
    if not COMPARISON_FILE.is_file():
        return {}
    data = json.loads(COMPARISON_FILE.read_text())
    return {"setup": data["setup"], "rows": {row["variant"]: row for row in data["rows"]}}


def performance(variant: str, macs: int, parameters: int, measured: dict) -> dict:
    """metadata ``performance``: counted parameters and MACs, and the CPU latency of the comparison report (with the
    setup of the row's own run when it was measured separately)."""
    row = measured.get("rows", {}).get(variant, {})
    return {
        "parameters": parameters,
        "macs": macs,
        "macs_input_shape": SPEC["macs_input_shape"],
        "cpu_latency_ms_batch1": row.get("latency_ms"),
        "cpu_latency_setup": row.get("setup", measured["setup"])["latency"]
        if row
        else "not measured yet: run benchmarks/hybridmednet_compare.py",
    }


def recorded_eval_metrics(name: str, bundles_dir: Path = BUNDLES_DIR) -> dict:
    """The ``eval_metrics`` recorded in bundle ``name`` (a measurement of that bundle: kept), or {} for a new one."""
    meta_file = Path(bundles_dir) / name / "configs" / "metadata.json"
    return json.loads(meta_file.read_text()).get("eval_metrics", {}) if meta_file.is_file() else {}


def metadata(
    template: dict, variant: str, role: str, perf: dict, eval_metrics: dict, changelog: dict | None = None
) -> dict:
    """The template's metadata with this variant's version, changelog, names, references, weights and figures.

    ``changelog`` (newest first) is the bundle's own release history when it joined the family later than the
    family's first release; by default the family's history applies.
    """
    meta = copy.deepcopy(template)
    ids = variant_ids(variant)
    attention = SPEC["attention_text"][ids["attention"]]
    changelog = changelog or SPEC["changelog"]
    meta["version"] = next(iter(changelog))
    meta["changelog"] = {v: text.format(backbone=ids["backbone"], attention=attention) for v, text in changelog.items()}
    meta["required_packages_version"] = {**meta["required_packages_version"], "timm": timm.__version__}
    meta["name"] = f"Chest X-ray 14-finding classification (HybridMedNet, {ids['backbone']}, {role})"
    backbone = backbone_family(ids["backbone"])["description"].format(backbone=ids["backbone"])
    meta["description"] = (
        f"HybridMedNet with {backbone}, {attention}, softmax-weighted fusion of the "
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
        *backbone_family(ids["backbone"])["references"],
    ]
    meta["weights"] = {
        "status": "init",
        "description": "No trained weights are shipped. models/model.pt is written by training (configs/train.json) or "
        "as deterministic initial weights (medzoo init-weights). "
        + (
            "Vision Mamba backbones start from random initialisation (no pretrained checkpoint is read)."
            if ids["backbone"] in VIM_BACKBONES
            else "A local timm checkpoint of the backbone can initialise training (--pretrained <file>)."
        ),
    }
    meta["eval_metrics"] = eval_metrics
    meta["performance"] = perf
    return meta


def _eager_defaults_text(entry: dict) -> str:
    batch, workers = entry["inference"]["batch_size"], entry["inference"]["num_workers"]
    report = entry.get("tuned_in")
    if report is None:
        return (
            f"Batch {batch} with {workers} loader worker{'s' * (workers != 1)} are not tuned for this bundle (no `--tune` "
            "grid has been run on it)."
        )
    return (
        f"This bundle's `--tune --tune_backend torch` grid ([`{report}`]({report})) measured batch "
        f"{batch} with {workers} loader worker{'s' * (workers != 1)} against its other cells and both thread "
        "layouts."
    )


def card(name: str, perf: dict, references: list[str]) -> str:
    """The hand-written part of bundle ``name``'s model card (``hybridmednet_card.md`` filled in)."""
    entry = BUNDLES[name]
    ids = variant_ids(entry["variant"])
    family = backbone_family(ids["backbone"])
    spec = BACKBONES.get(ids["backbone"])
    return CARD_FILE.read_text().format(
        backbone_row=family["row"].format(backbone=ids["backbone"]),
        pretrained_text=family["pretrained"].format(timm_name=spec.timm_name if spec else None),
        export_text=family["export"].format(name=name),
        backbone_limitations="".join(f"- {line}\n" for line in family["limitations"]),
        references="\n".join(f"- {r}." for r in references),
        name=name,
        variant=entry["variant"],
        role=entry["role"],
        backbone=ids["backbone"],
        attention=SPEC["attention_text"][ids["attention"]],
        neck_text=(
            "1x1 convolution of each scale to 256 channels" if ids["neck"] == "project" else "feature pyramid network"
        ),
        parameters=f"{perf['parameters']:,}",
        gmacs=f"{perf['macs'] / 1e9:.2f}",
        c=f"bundles/{name}/configs",
        others=", ".join(f"`{n}`" for n in BUNDLES if n != name),
        eager_defaults=_eager_defaults_text(entry),
    )


MODELS_README = """# models/

No weights are stored in git and none are released for this bundle yet (metadata `weights.status`: `init`).
`model.pt` (a plain state dict of `network_def`) appears here when you train
(`python -m monai.bundle run --config_file configs/train.json`) or write deterministic **untrained** weights for
plumbing tests (`medzoo init-weights {name}`). `model.ts` appears after `ckpt_export`.
"""


def counted_performance(variant: str) -> dict:
    """metadata ``performance`` of ``variant``, counting its parameters and MACs (builds the network)."""
    shape = SPEC["macs_input_shape"]
    network = create_hybridmednet(variant, img_size=shape[2:])
    return performance(variant, count_macs(network, shape), count_parameters(network), comparison())


def render(name: str, perf: dict | None = None, bundles_dir: Path = BUNDLES_DIR) -> dict[str, str]:
    """The text of every generated file of bundle ``name``: relative path -> content.

    ``bundles_dir`` holds the template bundle and the measurements the files carry (``docs/*.json`` reports,
    recorded ``eval_metrics``). ``perf`` (metadata ``performance``) is counted when not given.
    """
    entry = BUNDLES[name]
    variant = entry["variant"]
    template = Bundle(SPEC["template"], bundles_dir)

    def read(f):
        return json.loads(template.config_path(f).read_text())

    if perf is None:
        perf = counted_performance(variant)

    def dump(d):
        return json.dumps(d, indent=4) + "\n"

    meta = metadata(
        template.metadata,
        variant,
        entry["role"],
        perf,
        recorded_eval_metrics(name, bundles_dir),
        entry.get("changelog"),
    )
    return {
        "configs/train.json": dump(train_config(read("train.json"), variant)),
        "configs/inference.json": dump(inference_config(read("inference.json"), variant, entry["inference"])),
        "configs/multi_gpu_train.json": dump(multi_gpu_config(read("multi_gpu_train.json"))),
        "configs/multi_gpu_evaluate.json": dump(read("multi_gpu_evaluate.json")),
        "configs/multi_gpu_inference.json": dump(read("multi_gpu_inference.json")),
        "configs/evaluate.json": dump(read("evaluate.json")),
        "configs/sample_data.json": dump(read("sample_data.json")),
        "configs/quick.json": dump(read("quick.json")),
        "configs/demo.json": dump(read("demo.json")),
        "configs/metadata.json": dump(meta),
        "configs/logging.conf": template.config_path("logging.conf").read_text(),
        "docs/README.md": render_card(
            card(name, perf, meta["references"]), meta, Path(bundles_dir) / name / "docs", name
        ),
        "models/README.md": MODELS_README.format(name=name),
        "LICENSE": (template.root / "LICENSE").read_text(),
    }
