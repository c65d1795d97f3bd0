"""Hardening conventions (README, "Bundle conventions for hardening"): resumable, atomic checkpointing and checked
inputs.

:func:`check_hardening`: a trainable bundle declares the ids of :data:`~medzoo.bundle_properties.HARDENING_PROPERTIES`
(checked as MONAI bundle properties) and the handlers of resumable, atomic checkpointing; no config uses MONAI's
non-atomic ``CheckpointSaver`` or a ``CheckpointLoader`` that bypasses ``medzoo.weights``; inference reads inputs
through a checked loader into a ``medzoo.data.GuardedDataset``.
"""

from __future__ import annotations

import json

from .bundle_properties import HARDENING_PROPERTIES, VALIDATION_HARDENING_PROPERTIES, missing_property_ids
from .zoo import Bundle

__all__ = ["REPLACED_HANDLERS", "UNCHECKED_LOADERS", "check_hardening"]

#: MONAI handlers the zoo's configs do not use: ``CheckpointSaver`` writes in place (not atomic), ``CheckpointLoader``
#: reads weights outside ``medzoo.weights``. Their replacements: ``medzoo.handlers.SaveBestModel`` /
#: ``TrainingCheckpoint`` and ``medzoo.handlers.LoadWeights``.
REPLACED_HANDLERS = {
    "CheckpointSaver": "medzoo.handlers.SaveBestModel / medzoo.handlers.TrainingCheckpoint",
    "CheckpointLoader": "medzoo.handlers.LoadWeights / TrainingCheckpoint(resume=...)",
}


def _raw_config(bundle: Bundle, name: str) -> dict:
    """``configs/<name>`` as JSON data, unparsed."""
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

    advice = (
        f"read inputs with one of {', '.join(CHECKED_LOADERS)} as the first transform of 'preprocessing' and a "
        "medzoo.data.GuardedDataset (docs/bad_inputs.md)"
    )
    overrides = [n for n in bundle.configs if n.startswith("inference_") and n.endswith(".json")]
    for merged in [[config]] + [[config, n] for n in overrides]:
        parser = bundle.parser(*merged)
        where = f"{bundle.name}: configs/{' + '.join(merged)}"
        for name in merged:
            for target in _targets(_raw_config(bundle, name)):
                if target.rsplit(".", 1)[-1] in UNCHECKED_LOADERS:
                    raise ValueError(f"{bundle.name}: configs/{name} reads inputs with {target}, unchecked; {advice}")
        dataset = parser.get("dataset")
        if (
            not isinstance(dataset, dict)
            or dataset.get("_target_") != "medzoo.data.GuardedDataset"
            or dataset.get("transform") != "@preprocessing"
        ):
            target = dataset.get("_target_") if isinstance(dataset, dict) else dataset
            raise ValueError(
                f"{where}: 'dataset' is {target}, not a medzoo.data.GuardedDataset of '@preprocessing'; {advice}"
            )
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
    missing = missing_property_ids(bundle, "train.json", HARDENING_PROPERTIES, "train")
    if "validate" in parser:
        missing += missing_property_ids(bundle, "train.json", VALIDATION_HARDENING_PROPERTIES, "train")
    if missing:
        raise ValueError(
            f"{bundle.name}: train.json lacks the ids {missing} (README: Bundle conventions for hardening)"
        )
    target = str(parser["train#checkpoint"].get("_target_", "")) if isinstance(parser["train#checkpoint"], dict) else ""
    if not target.endswith("TrainingCheckpoint") or parser["train#checkpoint"].get("resume") != "@resume":
        raise ValueError(
            f"{bundle.name}: train#checkpoint must be a medzoo.handlers.TrainingCheckpoint with resume '@resume'"
        )
    if "@train#checkpoint" not in parser["train#handlers"]:
        raise ValueError(f"{bundle.name}: train#handlers must include '@train#checkpoint' (as its last entry)")
