"""Running bundle configs in-process, as ``python -m monai.bundle run`` does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.bundle import ConfigWorkflow

from .zoo import Bundle

__all__ = ["run_configs"]


def run_configs(bundle: Bundle, configs: Sequence[str], workflow_type: str | None = None, **overrides: Any) -> ConfigWorkflow:
    """Merge ``configs`` (names under the bundle's ``configs/``) with ``overrides`` and run initialize/run/finalize.

    ``bundle_root`` is set to the bundle's folder unless overridden. Returns the finished workflow, whose
    ``parser`` gives access to every component (e.g. ``wf.parser.get_parsed_content("validate#evaluator")``).

    Example::

        run_configs(Bundle("cxr14_densenet121_classification"), ["inference.json"], input="my_images/")
    """
    overrides.setdefault("bundle_root", str(bundle.root))
    workflow = ConfigWorkflow(
        config_file=[str(bundle.config_path(c)) for c in configs],
        meta_file=str(bundle.metadata_file),
        logging_file=str(bundle.config_path("logging.conf")) if (bundle.root / "configs" / "logging.conf").is_file() else False,
        workflow_type=workflow_type,
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow
