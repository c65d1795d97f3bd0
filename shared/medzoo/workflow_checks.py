"""Checks that run a bundle's workflows on the CPU with its ``configs/quick.json`` settings, in a scratch folder.

- :func:`check_workflows`: sample data, train, evaluate and inference ``ConfigWorkflow`` runs, each leaving its
  expected output;
- :func:`check_multi_gpu`: ``multi_gpu_train.json`` under torchrun with two processes (gloo on a CPU-only machine);
- :func:`check_determinism`: two CPU training runs with the bundle's ``seed`` give identical losses
  (:func:`training_losses`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .weights import write_init_weights
from .zoo import Bundle

__all__ = ["check_determinism", "check_multi_gpu", "check_workflows", "training_losses"]


def _expect(path: Path, what: str, bundle: Bundle) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        raise AssertionError(f"{bundle.name}: {what} did not write {path}")


def check_workflows(bundle: Bundle, workdir: str | os.PathLike, log: Callable[[str], None] = print) -> dict:
    """Run sample data, train, evaluate and inference with ``configs/quick.json`` in ``workdir``; return the outputs.

    The runs use the config ids every bundle shares: ``dataset_dir``, ``ckpt_dir``, ``output_dir``.
    """
    from .workflows import run_configs

    workdir = Path(workdir)
    dirs = {
        "dataset_dir": str(workdir / "data"),
        "ckpt_dir": str(workdir / "models"),
        "output_dir": str(workdir / "eval"),
    }
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
    from .workflows import bundle_command, run_bundle_command

    workdir = Path(workdir)
    configs = ["train.json", "multi_gpu_train.json"] + (["quick.json"] if "quick.json" in bundle.configs else [])
    command = bundle_command(
        bundle, configs, nproc, dataset_dir=dataset_dir, ckpt_dir=workdir / "models", output_dir=workdir / "eval"
    )
    run_bundle_command(bundle, command, "multi-GPU training")
    checkpoints = sorted(p.name for p in (workdir / "models").glob("*.pt"))
    resumable = "checkpoint_file" in bundle.parser("train.json")
    expected = sorted({"model.pt", "checkpoint.pt"} if resumable else {"model.pt"})
    if checkpoints != expected:
        raise AssertionError(f"{bundle.name}: multi-GPU training wrote {checkpoints}, expected {expected} (one writer)")
    return workdir / "models" / "model.pt"


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


def training_losses(
    bundle: Bundle, dataset_dir: str | os.PathLike, workdir: str | os.PathLike, iterations: int = 3, **overrides
) -> list[float]:
    """Losses of the first ``iterations`` steps of ``train.json`` (+ ``quick.json``) on the CPU, without validation.

    Uses the ids ``seed`` (through the setup steps at the head of the config's ``run``, which come before the
    trainer is built), ``train#trainer`` (its ``epoch_length`` is set to ``iterations``), ``train#handlers`` (a loss
    recorder is put first), ``max_epochs`` and ``val_interval``; the loss is ``engine.state.output["loss"]`` as in
    MONAI's trainers (or the first item's, if the output is decollated).
    """
    from monai.bundle import ConfigWorkflow

    workdir = Path(workdir)
    configs = ["train.json"] + (["quick.json"] if "quick.json" in bundle.configs else [])
    settings = {
        "bundle_root": str(bundle.root),
        "dataset_dir": str(dataset_dir),
        "ckpt_dir": str(workdir / "models"),
        "output_dir": str(workdir / "eval"),
        "device": "$torch.device('cpu')",
        "amp": False,
        "max_epochs": 1,
        "val_interval": 10**6,
        "train#trainer#epoch_length": iterations,
        **overrides,
    }
    workflow = ConfigWorkflow(
        config_file=[str(bundle.config_path(c)) for c in configs],
        meta_file=str(bundle.metadata_file),
        logging_file=False,
        workflow_type="train",
        **settings,
    )
    recorder = _LossRecorder()
    workflow.parser["train#handlers"] = [recorder, *workflow.parser["train#handlers"]]
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return recorder.losses


def check_determinism(
    bundle: Bundle, dataset_dir: str | os.PathLike, workdir: str | os.PathLike, iterations: int = 3
) -> list[float]:
    """Two CPU training runs of ``iterations`` steps with the config's ``seed`` must give identical losses."""
    first = training_losses(bundle, dataset_dir, Path(workdir) / "run1", iterations)
    second = training_losses(bundle, dataset_dir, Path(workdir) / "run2", iterations)
    if len(first) != iterations or first != second:
        raise AssertionError(f"{bundle.name}: training is not deterministic with a fixed seed: {first} vs {second}")
    return first
