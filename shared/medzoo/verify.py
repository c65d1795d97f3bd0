"""Verification of a bundle, as the MONAI model zoo's CI does it, plus the zoo's own conventions.

:func:`verify_bundle` runs, in this order, each check raising on failure with a message naming the bundle and the
problem:

- :func:`medzoo.config_review.print_config_review`: lists (does not judge) every import, ``$`` expression and
  ``_target_`` of the configs that reaches outside monai/torch/numpy/ignite/medzoo, before anything of the bundle runs;
- :mod:`medzoo.bundle_checks`: files, metadata (schema and cross-field rules), network input/output;
- :mod:`medzoo.hardening_checks`: resumable, atomic checkpointing and checked inference inputs;
- :mod:`medzoo.monailabel_checks`: what MONAI Label's ``monaibundle`` app reads;
- :func:`medzoo.bundle_checks.check_export`: TorchScript export round trip;
- :mod:`medzoo.workflow_checks` (``workflows=True``): sample data, train, evaluate and inference runs with the
  bundle's ``configs/quick.json``, then ``multi_gpu_train.json`` under torchrun (and, where a bundle has
  ``multi_gpu_evaluate.json``, :func:`medzoo.distributed.check_distributed`); its
  :func:`~medzoo.workflow_checks.check_determinism` runs in the tests.

The required config ids are MONAI bundle properties (``medzoo/properties``, :mod:`medzoo.bundle_properties`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from .bundle_checks import check_export, check_files, check_metadata, check_net_in_out
from .config_review import print_config_review
from .hardening_checks import check_hardening
from .monailabel import monailabel_task
from .monailabel_checks import check_monailabel_ready
from .workflow_checks import check_multi_gpu, check_workflows
from .zoo import Bundle, selected_bundles

__all__ = ["verify_bundle", "verify_bundles"]


def verify_bundle(name: str, workflows: bool = True, log: Callable[[str], None] = print) -> None:
    """All checks on one bundle; workflow runs happen in a temporary folder that is removed afterwards.

    The config review is listed first, before any of the bundle's code runs.
    """
    bundle = Bundle(name)
    print_config_review(bundle, log=log)
    check_files(bundle)
    check_hardening(bundle)
    check_metadata(bundle)
    log(f"{bundle.name}: metadata ok")
    check_net_in_out(bundle)
    log(f"{bundle.name}: network input/output ok")
    check_monailabel_ready(bundle)
    log(
        f"{bundle.name}: MONAI Label requirements ok"
        if monailabel_task(bundle)
        else f"{bundle.name}: not a MONAI Label task"
    )
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


def verify_bundles(
    bundle: str | os.PathLike | None = None, workflows: bool = True, log: Callable[[str], None] = print
) -> list[str]:
    """Run :func:`medzoo.verify.verify_bundle` on ``bundle`` or on every bundle of the zoo, in name order, logging
    ``<name>: verified`` after each; the first failure raises. Returns the names verified."""
    names = []
    for found in selected_bundles(bundle):
        verify_bundle(str(found.root), workflows=workflows, log=log)
        log(f"{found.name}: verified")
        names.append(found.name)
    return names
