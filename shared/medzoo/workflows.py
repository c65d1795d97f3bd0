"""Running bundle configs in-process, as ``python -m monai.bundle run`` does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

from .zoo import Bundle

__all__ = [
    "WEIGHT_LOADERS",
    "bundle_command",
    "run_bundle_command",
    "run_configs",
    "without_weight_loaders",
    "write_sample_data",
]

#: Handler classes that load a checkpoint into the network (matched on the end of a config item's ``_target_``).
WEIGHT_LOADERS = ("LoadWeights", "CheckpointLoader")


def without_weight_loaders(config: Any) -> Any:
    """A copy of a raw config with every list item whose ``_target_`` is a weight-loading handler removed.

    Used when the network is replaced by a model file that already carries its weights (TorchScript, ONNX).
    """
    if isinstance(config, dict):
        return {k: without_weight_loaders(v) for k, v in config.items()}
    if isinstance(config, list):
        return [
            without_weight_loaders(v)
            for v in config
            if not (isinstance(v, dict) and str(v.get("_target_", "")).endswith(WEIGHT_LOADERS))
        ]
    return config


def run_configs(
    bundle: Bundle,
    configs: Sequence[str],
    workflow_type: str | None = None,
    drop_weight_loaders: bool = False,
    **overrides: Any,
) -> ConfigWorkflow:
    """Merge ``configs`` (names under the bundle's ``configs/``) with ``overrides`` and run initialize/run/finalize.

    ``drop_weight_loaders`` removes the configs' weight-loading handlers (see :func:`without_weight_loaders`).

    ``bundle_root`` is set to the bundle's folder unless overridden. Returns the finished workflow, whose
    ``parser`` gives access to every component (e.g. ``wf.parser.get_parsed_content("validate#evaluator")``).

    Example::

        run_configs(Bundle("cxr14_densenet121_classification"), ["inference.json"], input="my_images/")
    """
    overrides.setdefault("bundle_root", str(bundle.root))
    workflow = ConfigWorkflow(
        config_file=[str(bundle.config_path(c)) for c in configs],
        meta_file=str(bundle.metadata_file),
        logging_file=str(bundle.config_path("logging.conf"))
        if (bundle.root / "configs" / "logging.conf").is_file()
        else False,
        workflow_type=workflow_type,
        **overrides,
    )
    if drop_weight_loaders:
        workflow.parser.set(without_weight_loaders(workflow.parser.get()))
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def write_sample_data(bundle: Bundle | str, dataset_dir: str | None = None, **overrides: Any) -> str:
    """Run the bundle's ``configs/sample_data.json`` (``bundle``: a name, a folder or a :class:`Bundle`) and return
    the folder it wrote, its ``dataset_dir`` (``dataset_dir`` if given; ``overrides`` reach the config, e.g.
    ``num_patients``)."""
    if dataset_dir is not None:
        overrides["dataset_dir"] = dataset_dir
    workflow = run_configs(bundle if isinstance(bundle, Bundle) else Bundle(bundle), ["sample_data.json"], **overrides)
    return workflow.parser.get_parsed_content("dataset_dir")


def write_held_out_datalist(bundle: Bundle | str, dataset_dir: str | os.PathLike, **overrides: Any) -> str:
    """Write the bundle's sample data into ``dataset_dir`` (``overrides`` reach ``sample_data.json``: another ``seed``
    gives patients a training on the default seed never saw) and list every image of it, whatever its split, under
    ``test`` in ``<dataset_dir>/all.json`` (splits ``training``, ``validation``, ``test`` in that order). Returns that
    file's path, for ``medzoo.data.load_datalist(path, 'test')``.
    """
    folder = Path(write_sample_data(bundle, str(dataset_dir), **overrides))
    splits = json.loads((folder / "datalist.json").read_text())
    datalist = folder / "all.json"
    every = [item for split in ("training", "validation", "test") for item in splits.get(split, [])]
    datalist.write_text(json.dumps({"test": every}))
    return str(datalist)


def bundle_command(bundle: Bundle, configs: Sequence[str], nproc: int = 0, **overrides: Any) -> list[str]:
    """``python -m monai.bundle run`` of ``configs`` (names under the bundle's ``configs/``, merged in order) with
    ``--key value`` overrides; with ``nproc`` > 0 under ``torchrun --standalone --nproc_per_node=nproc`` (as
    ``python -m torch.distributed.run``, the module the ``torchrun`` script runs)."""
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        if nproc
        else [sys.executable]
    )
    options = [a for k, v in overrides.items() for a in (f"--{k}", str(v))]
    return [
        *launcher,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str([str(bundle.config_path(c)) for c in configs]),
        "--bundle_root",
        str(bundle.root),
        *options,
    ]


def run_bundle_command(bundle: Bundle, command: list[str], what: str, env: dict[str, str] | None = None) -> None:
    """Run ``command`` (e.g. :func:`bundle_command`) with ``env`` added to the environment; on failure raise
    ``AssertionError`` naming ``what`` with the end of its output, a fatal error's Python stacks first (faulthandler
    is on, so a rank that dies on a signal shows where)."""
    full_env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=full_env)
    if result.returncode != 0:
        # the list of loaded extension modules faulthandler prints is thousands of characters of noise
        stderr = re.sub(r"(?m)^Extension modules: .*$", "Extension modules: [...]", result.stderr)
        fatal = stderr.find("Fatal Python error")
        # what precedes the fatal error (e.g. a C++ exception's "terminate called after throwing ...") and its stacks
        stacks = "" if fatal < 0 else stderr[max(0, fatal - 2000) : fatal + 4000] + "\n[...]\n"
        raise AssertionError(f"{bundle.name}: {what} failed:\n{' '.join(command)}\n{stacks}{stderr[-4000:]}")
