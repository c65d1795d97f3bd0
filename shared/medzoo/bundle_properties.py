"""Config ids a bundle must define, declared as MONAI bundle properties and checked with MONAI's own mechanism.

The zoo's requirements are JSON files in ``medzoo/properties`` in the format of MONAI's ``properties_path`` (a
``"train"`` and/or ``"infer"`` section; each property with ``description``, ``required`` and the config ``id``):

- ``monailabel.json``: the ids MONAI Label's ``monaibundle`` app sets or reads (``infer``: ``configs/inference.json``;
  ``train``: ``configs/train.json``);
- ``hardening.json``: the ids of resumable, atomic checkpointing every ``train.json`` defines;
- ``hardening_validation.json``: required as well when ``train.json`` validates.

:func:`missing_property_ids` loads a file through ``ConfigWorkflow(..., properties_path=...)`` and asks MONAI's
``check_properties()`` which required properties the config lacks. A property counts as present when its config id
is defined: nothing of the bundle is instantiated.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monai.bundle import ConfigWorkflow
from monai.utils import BundlePropertyConfig

if TYPE_CHECKING:
    from .zoo import Bundle

__all__ = [
    "HARDENING_PROPERTIES",
    "MONAILABEL_PROPERTIES",
    "PROPERTIES_DIR",
    "VALIDATION_HARDENING_PROPERTIES",
    "missing_property_ids",
]

PROPERTIES_DIR = Path(__file__).parent / "properties"
MONAILABEL_PROPERTIES = PROPERTIES_DIR / "monailabel.json"
HARDENING_PROPERTIES = PROPERTIES_DIR / "hardening.json"
VALIDATION_HARDENING_PROPERTIES = PROPERTIES_DIR / "hardening_validation.json"


class _DefinedIdsWorkflow(ConfigWorkflow):
    """A ``ConfigWorkflow`` whose property values are their config ids, so ``check_properties()`` (MONAI's
    ``hasattr`` on each required property) tells which ids the config does not define, without parsing or building
    any config content."""

    def _get_property(self, name: str, property: dict) -> Any:
        config_id = property[BundlePropertyConfig.ID]
        if config_id not in self.parser:
            raise AttributeError(f"property '{name}': config id '{config_id}' is not defined")
        return config_id


@contextlib.contextmanager
def _quiet_monai_workflows() -> Iterator[None]:
    """Silence ``monai.bundle.workflows``' warnings (no logging file; the missing properties, which the caller
    reports itself)."""
    workflow_logger = logging.getLogger("monai.bundle.workflows")
    level = workflow_logger.level
    workflow_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        workflow_logger.setLevel(level)


def _workflow(bundle: Bundle, config: str, properties_file: Path, workflow_type: str) -> _DefinedIdsWorkflow:
    with _quiet_monai_workflows():
        workflow = _DefinedIdsWorkflow(
            config_file=str(bundle.config_path(config)),
            meta_file=str(bundle.metadata_file),
            logging_file=False,
            workflow_type=workflow_type,
            properties_path=properties_file,
            bundle_root=str(bundle.root),
        )
    if not workflow.properties:
        raise ValueError(f"{properties_file} has no '{workflow.get_workflow_type()}' properties")
    clashes = [name for name in workflow.properties if hasattr(ConfigWorkflow, name)]
    if clashes:  # hasattr would find the workflow's own attribute, whatever the config defines
        raise ValueError(f"{properties_file}: property names {clashes} are attributes of ConfigWorkflow; rename them")
    return workflow


def missing_property_ids(bundle: Bundle, config: str, properties_file: str | Path, workflow_type: str) -> list[str]:
    """Config ids of the required properties in ``properties_file`` (its ``workflow_type`` section: ``"train"`` or
    ``"infer"``) that ``configs/<config>`` of ``bundle`` does not define, in file order; ``bundle_root`` is set to the
    bundle's folder, as :meth:`medzoo.zoo.Bundle.parser` does."""
    workflow = _workflow(bundle, config, Path(properties_file), workflow_type)
    with _quiet_monai_workflows():
        missing = workflow.check_properties() or []
    return [workflow.properties[name][BundlePropertyConfig.ID] for name in missing]
