"""Verification of a bundle, as the MONAI model zoo's CI does it, plus the zoo's own conventions.

Each check raises on failure with a message naming the bundle and the problem:

- :func:`check_metadata`: ``verify_metadata`` against the schema shipped in ``medzoo/schema`` (no download), the
  changelog names the version, output ``channel_def`` has one name per channel (MONAI Label reads it), class
  outputs have ``spatial_shape`` ``[1, num_channels]`` (as the MONAI model zoo writes them), and
  ``required_packages_version`` lists ``fire`` (``python -m monai.bundle``) but not the vendored ``medzoo``;
- :func:`check_net_in_out`: ``verify_net_in_out`` on ``network_def`` with the shapes from the metadata;
- :func:`check_export`: ``ckpt_export`` to TorchScript from deterministic initial weights, loaded back and compared
  with the eager network on the same input;
- :func:`check_workflows`: sample data, train, evaluate and inference ``ConfigWorkflow`` runs with the bundle's
  ``configs/quick.json`` overrides in a scratch folder, each leaving its expected output;
- :func:`check_multi_gpu`: ``multi_gpu_train.json`` under torchrun with two processes (gloo on a CPU-only machine);
  where a bundle has ``multi_gpu_evaluate.json``, :func:`medzoo.distributed.check_distributed` compares its
  evaluation and inference under torchrun with one process;
- :func:`check_monailabel_ready`: what MONAI Label's ``monaibundle`` app reads from a segmentation or classification
  bundle (config ids, label names, the task word in the folder name);
- :func:`check_hardening`: a trainable bundle declares the ids and handlers of resumable, atomic checkpointing
  (README "Bundle conventions for hardening") and no config uses MONAI's non-atomic ``CheckpointSaver`` or a
  ``CheckpointLoader`` that bypasses ``medzoo.weights``; inference reads inputs through a checked loader into a
  ``medzoo.data.GuardedDataset``;
- :func:`check_determinism`: two CPU training runs with the bundle's ``seed`` give identical losses;
- :func:`review_bundle`: lists (does not judge) every import, ``$`` expression and ``_target_`` of the configs that
  reaches outside monai/torch/numpy/ignite/medzoo, before anything of the bundle is run.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out

from .weights import load_state_dict, save_weights
from .zoo import Bundle

__all__ = ["HARDENING_IDS", "REQUIRED_FILES", "SCHEMA_FILE", "check_determinism", "check_export", "check_files",
           "check_hardening", "check_metadata", "check_monailabel_ready", "check_multi_gpu", "check_net_in_out",
           "check_workflows", "monailabel_task", "review_bundle", "training_losses", "verify_bundle",
           "write_frozen_init_weights", "write_init_weights"]

SCHEMA_FILE = Path(__file__).parent / "schema" / "meta_schema.json"
REQUIRED_FILES = (
    "configs/metadata.json",
    "configs/inference.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
)
TRAINABLE_FILES = ("configs/train.json", "configs/evaluate.json", "configs/multi_gpu_train.json")
#: Config ids MONAI Label's ``BundleInferTask`` (monailabel 0.8.5, ``monailabel/tasks/infer/bundle.py``) reads from
#: ``configs/inference.json``; it sets ``bundle_root`` itself and loads ``models/model.pt`` into ``network_def``.
MONAILABEL_INFER_IDS = ("bundle_root", "device", "network_def", "preprocessing", "inferer", "postprocessing")
#: Ids its ``BundleTrainTask`` overrides in ``configs/train.json`` (epochs, datalists, devices, validation interval).
MONAILABEL_TRAIN_IDS = ("bundle_root", "device", "train#trainer#max_epochs", "train#dataset#data", "train#handlers",
                        "validate#dataset#data", "validate#handlers", "val_interval")
#: MONAI Label derives the task from the bundle folder's name, checking these words in this order.
MONAILABEL_TASK_WORDS = ("deepedit", "deepgrow", "detection", "segmentation", "classification")


#: How a config names a bundle folder: ``medzoo.paths.bundle_root('<name>')`` or ``medzoo.zoo.Bundle('<name>')``.
_OTHER_BUNDLE = re.compile(r"""(?:bundle_root|Bundle)\(\s*['"]([^'"]+)['"]""")


def check_files(bundle: Bundle) -> None:
    """The files every bundle has, and those every trainable bundle has; the docs carry the disclaimer; inference
    configs read no other bundle's files."""
    expected = REQUIRED_FILES + (TRAINABLE_FILES if (bundle.root / "configs" / "train.json").is_file() else ())
    missing = [f for f in expected if not (bundle.root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{bundle.name}: missing {missing}")
    docs = (bundle.root / "docs" / "README.md").read_text().lower()
    if "not for clinical use" not in docs:
        raise ValueError(f"{bundle.name}: docs/README.md must state that the model is not for clinical use")
    for config in [c for c in bundle.configs if c.startswith("inference")]:
        others = set(_OTHER_BUNDLE.findall(bundle.config_path(config).read_text())) - {bundle.name}
        if others:
            raise ValueError(f"{bundle.name}: configs/{config} reads files of other bundles {sorted(others)}; inference "
                             "must run from this bundle alone (a package holds one bundle): keep those files in models/")


def check_metadata(bundle: Bundle, schema_file: str | os.PathLike = SCHEMA_FILE) -> None:
    """Validate ``configs/metadata.json`` against the zoo's schema and the cross-field rules a schema cannot state."""
    try:
        verify_metadata(meta_file=str(bundle.metadata_file), filepath=str(schema_file))
    except ValueError as e:
        raise ValueError(f"{bundle.name}: metadata.json does not follow the schema: {e}") from e
    meta = bundle.metadata
    if meta["version"] not in meta["changelog"]:
        raise ValueError(f"{bundle.name}: changelog has no entry for version {meta['version']}")
    for version, entry in meta["changelog"].items():
        if len(entry) >= 100:
            raise ValueError(f"{bundle.name}: changelog entry {version} is {len(entry)} characters; write one short line "
                             "under 100 characters saying what changed (no figures, reasons or history)")
    packages = meta["required_packages_version"]
    if "medzoo" in packages:
        raise ValueError(f"{bundle.name}: required_packages_version lists medzoo, which a package carries vendored and "
                         "no package index has: list only installable distributions")
    if "fire" not in packages:
        raise ValueError(f"{bundle.name}: required_packages_version must list fire, which 'python -m monai.bundle' needs")
    for kind in ("inputs", "outputs"):
        for key, spec in meta["network_data_format"][kind].items():
            names = spec.get("channel_def", {})
            if kind == "outputs" and len(names) != spec["num_channels"]:
                raise ValueError(
                    f"{bundle.name}: output '{key}' has {spec['num_channels']} channels but channel_def names {len(names)}"
                )
            if kind == "outputs" and spec["format"] == "classes" and spec["spatial_shape"] != [1, spec["num_channels"]]:
                raise ValueError(f"{bundle.name}: class output '{key}' must have spatial_shape [1, num_channels] "
                                 f"([1, {spec['num_channels']}], as the MONAI model zoo writes it), not {spec['spatial_shape']}")


def check_net_in_out(bundle: Bundle, config: str = "inference.json") -> None:
    """Run ``network_def`` on a random input of the metadata's input shape and check the output channels / dtype."""
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle.metadata_file),
        config_file=str(bundle.config_path(config)),
        device="cpu",
        bundle_root=str(bundle.root),
    )


def write_init_weights(bundle: Bundle, path: str | os.PathLike, seed: int = 0, config: str = "inference.json") -> Path:
    """Write deterministic initial weights of ``network_def`` (same ``seed`` -> same tensors) as a state dict.

    The format follows the suffix of ``path``: ``.safetensors`` or a torch state dict (see ``medzoo.weights``).
    """
    torch.manual_seed(seed)
    network = bundle.network(config)
    return save_weights(network.state_dict(), path)


def write_frozen_init_weights(bundle: Bundle, seed: int = 0, config: str = "inference.json", **overrides) -> list[Path]:
    """Write deterministic initial weights of the frozen sub-networks a config loads; returns the files written.

    A bundle that runs a second, frozen network (the MI bundle's motion network) declares it as ``<name>_network_def``
    with its weights at ``<name>_checkpoint``, resolved with this bundle's root (``models/<name>_model.pt`` by
    convention, so a package carries them); ``overrides`` reach the config (e.g. ``ckpt_dir``). Bundles without such
    pairs get nothing written.
    """
    parser = bundle.parser(config, **overrides)
    written = []
    for key in parser.config:
        name = key.removesuffix("_network_def")
        if key.endswith("_network_def") and f"{name}_checkpoint" in parser.config:
            torch.manual_seed(seed)
            network = parser.get_parsed_content(key)
            written.append(save_weights(network.state_dict(), parser.get_parsed_content(f"{name}_checkpoint")))
    return written


def _example_input(bundle: Bundle) -> torch.Tensor:
    spec = next(iter(bundle.metadata["network_data_format"]["inputs"].values()))
    shape = [s if isinstance(s, int) else 64 for s in spec["spatial_shape"]]
    torch.manual_seed(1)
    return torch.rand(2, spec["num_channels"], *shape)


def check_export(bundle: Bundle, workdir: str | os.PathLike, config: str = "inference.json", atol: float = 1e-4) -> Path:
    """``ckpt_export`` to TorchScript, load it back, and compare with the eager network on the same input."""
    workdir = Path(workdir)
    ckpt = write_init_weights(bundle, workdir / "model.pt", config=config)
    ts_file = workdir / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_file),
        ckpt_file=str(ckpt),
        meta_file=str(bundle.metadata_file),
        config_file=str(bundle.config_path(config)),
        bundle_root=str(bundle.root),
    )
    scripted = torch.jit.load(str(ts_file), map_location="cpu")
    eager = bundle.network(config)
    eager.load_state_dict(load_state_dict(ckpt))
    x = _example_input(bundle)
    with torch.no_grad():
        diff = (scripted.eval()(x) - eager.eval()(x)).abs().max().item()
    if diff > atol:
        raise AssertionError(f"{bundle.name}: TorchScript output differs from eager by {diff:.2e} (> {atol})")
    return ts_file


def _expect(path: Path, what: str, bundle: Bundle) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        raise AssertionError(f"{bundle.name}: {what} did not write {path}")


def check_workflows(bundle: Bundle, workdir: str | os.PathLike, log: Callable[[str], None] = print) -> dict:
    """Run sample data, train, evaluate and inference with ``configs/quick.json`` in ``workdir``; return the outputs.

    The runs use the config ids every bundle shares: ``dataset_dir``, ``ckpt_dir``, ``output_dir``.
    """
    from .workflows import run_configs

    workdir = Path(workdir)
    dirs = {"dataset_dir": str(workdir / "data"), "ckpt_dir": str(workdir / "models"), "output_dir": str(workdir / "eval")}
    configs = set(bundle.configs)
    quick = ["quick.json"] if "quick.json" in configs else []
    outputs: dict[str, Path] = {}
    if "sample_data.json" in configs:
        log(f"{bundle.name}: sample data")
        run_configs(bundle, ["sample_data.json", *quick], dataset_dir=dirs["dataset_dir"])
    if "train.json" in configs:
        log(f"{bundle.name}: train")
        run_configs(bundle, ["train.json", *quick], workflow_type="train", **dirs)
        outputs["weights"] = Path(dirs["ckpt_dir"]) / "model.pt"
        _expect(outputs["weights"], "training", bundle)
        log(f"{bundle.name}: evaluate")
        run_configs(bundle, ["train.json", "evaluate.json", *quick], workflow_type="eval", **dirs)
        outputs["metrics"] = Path(dirs["output_dir"]) / "metrics.json"
        _expect(outputs["metrics"], "evaluation", bundle)
    else:
        write_init_weights(bundle, Path(dirs["ckpt_dir"]) / "model.pt")
    log(f"{bundle.name}: inference")
    workflow = run_configs(bundle, ["inference.json", *quick], workflow_type="infer", **dirs)
    outputs["inference_dir"] = Path(workflow.parser.get_parsed_content("output_dir"))
    if not any(outputs["inference_dir"].iterdir()):
        raise AssertionError(f"{bundle.name}: inference wrote nothing to {outputs['inference_dir']}")
    return outputs


def check_multi_gpu(bundle: Bundle, dataset_dir: str | os.PathLike, workdir: str | os.PathLike, nproc: int = 2) -> Path:
    """Run ``train.json`` + ``multi_gpu_train.json`` (+ ``quick.json``) under torchrun with ``nproc`` processes.

    Without GPUs the config uses the gloo backend on the CPU. ``dataset_dir`` must hold the sample data. Returns the
    checkpoint, which exactly one rank writes.
    """
    import subprocess
    import sys

    workdir = Path(workdir)
    configs = ["train.json", "multi_gpu_train.json"] + (["quick.json"] if "quick.json" in bundle.configs else [])
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "monai.bundle", "run",
        "--config_file", str([str(bundle.config_path(c)) for c in configs]),
        "--bundle_root", str(bundle.root),
        "--dataset_dir", str(dataset_dir),
        "--ckpt_dir", str(workdir / "models"),
        "--output_dir", str(workdir / "eval"),
    ]
    # faulthandler: should a rank die on a signal (e.g. SIGABRT at exit), its Python stacks are in the message
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env)
    if result.returncode != 0:
        # the list of loaded extension modules faulthandler prints is thousands of characters of noise
        stderr = re.sub(r"(?m)^Extension modules: .*$", "Extension modules: [...]", result.stderr)
        fatal = stderr.find("Fatal Python error")
        # what precedes the fatal error (e.g. a C++ exception's "terminate called after throwing ...") and its stacks
        stacks = "" if fatal < 0 else stderr[max(0, fatal - 2000):fatal + 4000] + "\n[...]\n"
        raise AssertionError(f"{bundle.name}: multi-GPU training failed:\n{stacks}{stderr[-4000:]}")
    checkpoints = sorted(p.name for p in (workdir / "models").glob("*.pt"))
    expected = sorted({"model.pt", "checkpoint.pt"} if "checkpoint_file" in _raw_config(bundle, "train.json") else {"model.pt"})
    if checkpoints != expected:
        raise AssertionError(f"{bundle.name}: multi-GPU training wrote {checkpoints}, expected {expected} (one writer)")
    return workdir / "models" / "model.pt"


#: Ids every ``train.json`` defines for the hardening checks (see README, "Bundle conventions for hardening").
HARDENING_IDS = ("seed", "resume", "checkpoint_file", "max_epochs", "train#trainer", "train#checkpoint")
#: Required as well when ``train.json`` validates (a ``validate`` section): the best metric is restored on resume.
VALIDATION_HARDENING_IDS = ("val_interval", "validate#evaluator")
#: MONAI handlers the zoo's configs do not use: ``CheckpointSaver`` writes in place (not atomic), ``CheckpointLoader``
#: reads weights outside ``medzoo.weights``. Their replacements: ``medzoo.handlers.SaveBestModel`` /
#: ``TrainingCheckpoint`` and ``medzoo.handlers.LoadWeights``.
REPLACED_HANDLERS = {"CheckpointSaver": "medzoo.handlers.SaveBestModel / medzoo.handlers.TrainingCheckpoint",
                     "CheckpointLoader": "medzoo.handlers.LoadWeights / TrainingCheckpoint(resume=...)"}


def _raw_config(bundle: Bundle, name: str) -> dict:
    import json

    with open(bundle.config_path(name)) as f:
        return json.load(f)


def _targets(config: object) -> list[str]:
    if isinstance(config, dict):
        found = [str(config["_target_"])] if "_target_" in config else []
        return found + [t for v in config.values() for t in _targets(v)]
    if isinstance(config, list):
        return [t for v in config for t in _targets(v)]
    return []


#: MONAI's loaders, which read what a checked loader (:data:`medzoo.io_checks.CHECKED_LOADERS`) reads without its checks.
UNCHECKED_LOADERS = ("LoadImage", "LoadImaged")


def _check_inference_inputs(bundle: Bundle, config: str = "inference.json") -> None:
    """``config`` (with each ``inference_*.json`` merged on it) reads inputs through a checked loader, first in its
    ``preprocessing``, into a :class:`medzoo.data.GuardedDataset` that its ``dataloader`` iterates."""
    from .io_checks import CHECKED_LOADERS

    advice = (f"read inputs with one of {', '.join(CHECKED_LOADERS)} as the first transform of 'preprocessing' and a "
              "medzoo.data.GuardedDataset (docs/bad_inputs.md)")
    overrides = [n for n in bundle.configs if n.startswith("inference_") and n.endswith(".json")]
    for merged in [[config]] + [[config, n] for n in overrides]:
        parser = bundle.parser(*merged)
        where = f"{bundle.name}: configs/{' + '.join(merged)}"
        for name in merged:
            for target in _targets(_raw_config(bundle, name)):
                if target.rsplit(".", 1)[-1] in UNCHECKED_LOADERS:
                    raise ValueError(f"{bundle.name}: configs/{name} reads inputs with {target}, unchecked; {advice}")
        dataset = parser.get("dataset")
        if not isinstance(dataset, dict) or dataset.get("_target_") != "medzoo.data.GuardedDataset" \
                or dataset.get("transform") != "@preprocessing":
            target = dataset.get("_target_") if isinstance(dataset, dict) else dataset
            raise ValueError(f"{where}: 'dataset' is {target}, not a medzoo.data.GuardedDataset of '@preprocessing'; {advice}")
        dataloader = parser.get("dataloader")
        if not isinstance(dataloader, dict) or dataloader.get("dataset") != "@dataset":
            raise ValueError(f"{where}: 'dataloader' must iterate '@dataset'; {advice}")
        preprocessing = parser.get("preprocessing")
        transforms = preprocessing.get("transforms") if isinstance(preprocessing, dict) else None
        first = transforms[0] if isinstance(transforms, list) and transforms else None
        loader = first.get("_target_") if isinstance(first, dict) else first
        if loader not in CHECKED_LOADERS:
            raise ValueError(f"{where}: 'preprocessing' starts with {loader}, not a checked loader; {advice}")


def check_hardening(bundle: Bundle) -> None:
    """Resumable, atomic checkpointing is declared the zoo's way; no config uses the handlers it replaces; inference
    reads its inputs through a checked loader into a :class:`medzoo.data.GuardedDataset` (bad inputs are per-file
    errors, docs/bad_inputs.md)."""
    if "inference.json" in bundle.configs:
        _check_inference_inputs(bundle)
    for name in bundle.configs:
        if name.endswith(".json"):
            for target in _targets(_raw_config(bundle, name)):
                short = target.rsplit(".", 1)[-1]
                if short in REPLACED_HANDLERS:
                    raise ValueError(f"{bundle.name}: configs/{name} uses {target}; use {REPLACED_HANDLERS[short]}")
    if "train.json" not in bundle.configs:
        return
    parser = bundle.parser("train.json")
    required = HARDENING_IDS + (VALIDATION_HARDENING_IDS if "validate" in parser else ())
    missing = [i for i in required if i not in parser]
    if missing:
        raise ValueError(f"{bundle.name}: train.json lacks the ids {missing} (README: Bundle conventions for hardening)")
    target = str(parser["train#checkpoint"].get("_target_", "")) if isinstance(parser["train#checkpoint"], dict) else ""
    if not target.endswith("TrainingCheckpoint") or parser["train#checkpoint"].get("resume") != "@resume":
        raise ValueError(f"{bundle.name}: train#checkpoint must be a medzoo.handlers.TrainingCheckpoint with resume '@resume'")
    if "@train#checkpoint" not in parser["train#handlers"]:
        raise ValueError(f"{bundle.name}: train#handlers must include '@train#checkpoint' (as its last entry)")


class _LossRecorder:
    """A trainer handler (MONAI calls ``attach``) that keeps the loss of every iteration."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine) -> None:
        output = engine.state.output
        output = output[0] if isinstance(output, (list, tuple)) else output
        self.losses.append(float(output["loss"]))


def training_losses(bundle: Bundle, dataset_dir: str | os.PathLike, workdir: str | os.PathLike, iterations: int = 3,
                    **overrides) -> list[float]:
    """Losses of the first ``iterations`` steps of ``train.json`` (+ ``quick.json``) on the CPU, without validation.

    Uses the ids ``seed`` (through the setup steps at the head of the config's ``run``, which come before the
    trainer is built), ``train#trainer`` (its ``epoch_length`` is set to ``iterations``), ``train#handlers`` (a loss
    recorder is put first), ``max_epochs`` and ``val_interval``; the loss is ``engine.state.output["loss"]`` as in
    MONAI's trainers (or the first item's, if the output is decollated).
    """
    from monai.bundle import ConfigWorkflow

    workdir = Path(workdir)
    configs = ["train.json"] + (["quick.json"] if "quick.json" in bundle.configs else [])
    settings = {"bundle_root": str(bundle.root), "dataset_dir": str(dataset_dir), "ckpt_dir": str(workdir / "models"),
                "output_dir": str(workdir / "eval"), "device": "$torch.device('cpu')", "amp": False, "max_epochs": 1,
                "val_interval": 10**6, "train#trainer#epoch_length": iterations, **overrides}
    workflow = ConfigWorkflow(config_file=[str(bundle.config_path(c)) for c in configs], meta_file=str(bundle.metadata_file),
                              logging_file=False, workflow_type="train", **settings)
    recorder = _LossRecorder()
    workflow.parser["train#handlers"] = [recorder, *workflow.parser["train#handlers"]]
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return recorder.losses


def check_determinism(bundle: Bundle, dataset_dir: str | os.PathLike, workdir: str | os.PathLike, iterations: int = 3) -> list[float]:
    """Two CPU training runs of ``iterations`` steps with the config's ``seed`` must give identical losses."""
    first = training_losses(bundle, dataset_dir, Path(workdir) / "run1", iterations)
    second = training_losses(bundle, dataset_dir, Path(workdir) / "run2", iterations)
    if len(first) != iterations or first != second:
        raise AssertionError(f"{bundle.name}: training is not deterministic with a fixed seed: {first} vs {second}")
    return first


def review_bundle(bundle: Bundle, log: Callable[[str], None] | None = None) -> list:
    """List the bundle's config entries that execute code outside the trusted packages (:mod:`medzoo.safety`).

    Reads the configs as data: nothing of the bundle runs. ``log`` receives one line per item.
    """
    from .safety import TRUSTED_PACKAGES
    from .safety import review_bundle as review

    items = review(bundle.root)
    if log is not None:
        log(f"{bundle.name}: {len(items)} config item(s) reach outside {'/'.join(TRUSTED_PACKAGES)}; review them:"
            if items else f"{bundle.name}: every config item stays within {'/'.join(TRUSTED_PACKAGES)}")
        for item in items:
            log(f"  {item}")
    return items


def monailabel_task(bundle: Bundle) -> str | None:
    """``"segmentation"`` or ``"classification"`` when the metadata ``task`` says so (the bundles MONAI Label serves)."""
    task = bundle.metadata["task"].lower()
    return next((w for w in ("segmentation", "classification") if w in task), None)


def check_monailabel_ready(bundle: Bundle) -> None:
    """What MONAI Label's ``monaibundle`` app needs from a segmentation or classification bundle (others: no-op).

    - ``configs/inference.json`` defines :data:`MONAILABEL_INFER_IDS` (and ``train.json``, if present,
      :data:`MONAILABEL_TRAIN_IDS`); the first input of the metadata is ``image`` and ``preprocessing`` reads it
      (MONAI Label passes the file path as ``image`` and restores the prediction onto it);
    - the first output's ``channel_def`` names channels ``"0".."C-1"`` with names that stay distinct in lower case
      (MONAI Label lower-cases them into its label map);
    - the folder name carries the task word, since MONAI Label derives the task type from it (a classification
      bundle without "classification" in its name would be served as a segmentation model);
    - ``configs/inference.json`` does not refer to ``_meta_``: MONAI Label parses it without the metadata;
    - its ``preprocessing`` and ``postprocessing`` are ``Compose`` transforms (the app iterates over their transforms);
    - ``docs/README.md`` gives the ``medzoo monailabel setup <bundle> ...`` and ``start`` commands
      (:func:`medzoo.monailabel.documented_commands`).

    A bundle whose inputs the app cannot provide declares ``"monailabel_unsupported": "<reason>"`` in its metadata
    and explains it in its docs under a "MONAI Label" heading.
    """
    task = monailabel_task(bundle)
    if task is None:
        return
    unsupported = bundle.metadata.get("monailabel_unsupported")
    if unsupported:  # a declared, documented exception: the app's one-image input cannot feed this bundle
        docs_file = bundle.root / "docs" / "README.md"
        if "MONAI Label" not in (docs_file.read_text() if docs_file.is_file() else ""):
            raise ValueError(f"{bundle.name}: metadata declares monailabel_unsupported; docs/README.md must say why "
                             "under a 'MONAI Label' heading")
        return
    name_task = next((w for w in MONAILABEL_TASK_WORDS if w in bundle.name.lower()), "segmentation")
    if name_task != task:
        raise ValueError(f"{bundle.name}: MONAI Label would serve this {task} bundle as '{name_task}': its folder name "
                         f"must contain '{task}'")
    if re.search(r"[@%]_meta_", bundle.config_path("inference.json").read_text()):  # a reference, not image_meta_dict
        raise ValueError(f"{bundle.name}: configs/inference.json refers to _meta_, which MONAI Label's bundle loader "
                         "does not provide (it reads the config alone): spell the values out in the config")
    docs_file = bundle.root / "docs" / "README.md"
    docs = docs_file.read_text() if docs_file.is_file() else ""
    from .monailabel import documented_commands

    missing = [line for line in documented_commands(bundle.name) if line not in docs]
    if missing:
        raise ValueError(f"{bundle.name}: docs/README.md must give the MONAI Label command: {missing[0]}")
    required = {"inference.json": MONAILABEL_INFER_IDS}
    if "train.json" in bundle.configs:
        required["train.json"] = MONAILABEL_TRAIN_IDS
    for config, ids in required.items():
        parser = bundle.parser(config)
        missing = [i for i in ids if i not in parser]
        if missing:
            raise ValueError(f"{bundle.name}: configs/{config} lacks the ids MONAI Label sets or reads: {missing}")
    for key in ("preprocessing", "postprocessing"):
        target = (bundle.parser("inference.json").get(key) or {}).get("_target_", "Compose")
        if target.rpartition(".")[2] != "Compose":
            raise ValueError(f"{bundle.name}: configs/inference.json '{key}' is {target}, not a Compose; MONAI "
                             "Label iterates over its transforms")
    fmt = bundle.metadata["network_data_format"]
    input_key = next(iter(fmt["inputs"]))
    if input_key != "image" or "'image'" not in str(bundle.parser("inference.json").get("preprocessing")):
        raise ValueError(f"{bundle.name}: MONAI Label passes the input file as 'image': the metadata's first input "
                         f"(here '{input_key}') and the preprocessing must use that key")
    channel_def = next(iter(fmt["outputs"].values())).get("channel_def", {})
    if sorted(channel_def, key=lambda k: int(k) if k.isdigit() else -1) != [str(i) for i in range(len(channel_def))]:
        raise ValueError(f"{bundle.name}: output channel_def keys must be '0'..'{len(channel_def) - 1}', got "
                         f"{sorted(channel_def)}")
    lowered = [str(v).lower() for v in channel_def.values()]
    if not channel_def or len(set(lowered)) != len(lowered) or not all(lowered):
        raise ValueError(f"{bundle.name}: output channel_def names must be non-empty and distinct in lower case "
                         f"(MONAI Label's label map), got {list(channel_def.values())}")


def verify_bundle(name: str, workflows: bool = True, log: Callable[[str], None] = print) -> None:
    """All checks on one bundle; workflow runs happen in a temporary folder that is removed afterwards.

    The config review is listed first, before any of the bundle's code runs.
    """
    bundle = Bundle(name)
    review_bundle(bundle, log=log)
    check_files(bundle)
    check_hardening(bundle)
    check_metadata(bundle)
    log(f"{bundle.name}: metadata ok")
    check_net_in_out(bundle)
    log(f"{bundle.name}: network input/output ok")
    check_monailabel_ready(bundle)
    log(f"{bundle.name}: MONAI Label requirements ok" if monailabel_task(bundle) else f"{bundle.name}: not a MONAI Label task")
    with tempfile.TemporaryDirectory(prefix=f"verify_{bundle.name}_") as tmp:
        check_export(bundle, tmp)
        log(f"{bundle.name}: TorchScript export ok")
        if workflows:
            check_workflows(bundle, tmp, log=log)
            log(f"{bundle.name}: workflows ok")
            if "multi_gpu_train.json" in bundle.configs:
                check_multi_gpu(bundle, Path(tmp) / "data", Path(tmp) / "multi_gpu")
                log(f"{bundle.name}: multi-GPU (torchrun, {'nccl' if torch.cuda.is_available() else 'gloo'}) ok")
            if "multi_gpu_evaluate.json" in bundle.configs:
                from .distributed import check_distributed

                check_distributed(bundle, Path(tmp) / "data", Path(tmp) / "models", Path(tmp) / "distributed")
                log(f"{bundle.name}: multi-GPU evaluation and inference (torchrun) match one process")
