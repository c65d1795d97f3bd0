"""What MONAI Label's ``monaibundle`` app reads from a segmentation or classification bundle.

The config ids it sets or reads (``BundleInferTask`` / ``BundleTrainTask`` of monailabel 0.8.5, which set
``bundle_root`` themselves and load ``models/model.pt`` into ``network_def``) are MONAI bundle properties in
``medzoo/properties/monailabel.json`` (:mod:`medzoo.bundle_properties`); the label names, the task word in the folder
name and the documented commands are checked here as well.
"""

from __future__ import annotations

import re

from .bundle_properties import MONAILABEL_PROPERTIES, missing_property_ids
from .monailabel import documented_commands, monailabel_task
from .zoo import Bundle

__all__ = ["MONAILABEL_TASK_WORDS", "check_monailabel_ready"]

#: MONAI Label derives the task from the bundle folder's name, checking these words in this order.
MONAILABEL_TASK_WORDS = ("deepedit", "deepgrow", "detection", "segmentation", "classification")


def check_monailabel_ready(bundle: Bundle) -> None:
    """What MONAI Label's ``monaibundle`` app needs from a segmentation or classification bundle (others: no-op).

    - ``configs/inference.json`` defines the ``infer`` properties of
      :data:`~medzoo.bundle_properties.MONAILABEL_PROPERTIES` (and ``train.json``, if present, its ``train``
      properties), checked as MONAI bundle properties; the first input of the metadata is ``image`` and ``preprocessing`` reads it
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
            raise ValueError(
                f"{bundle.name}: metadata declares monailabel_unsupported; docs/README.md must say why "
                "under a 'MONAI Label' heading"
            )
        return
    name_task = next((w for w in MONAILABEL_TASK_WORDS if w in bundle.name.lower()), "segmentation")
    if name_task != task:
        raise ValueError(
            f"{bundle.name}: MONAI Label would serve this {task} bundle as '{name_task}': its folder name "
            f"must contain '{task}'"
        )
    if re.search(r"[@%]_meta_", bundle.config_path("inference.json").read_text()):  # a reference, not image_meta_dict
        raise ValueError(
            f"{bundle.name}: configs/inference.json refers to _meta_, which MONAI Label's bundle loader "
            "does not provide (it reads the config alone): spell the values out in the config"
        )
    docs_file = bundle.root / "docs" / "README.md"
    docs = docs_file.read_text() if docs_file.is_file() else ""

    missing = [line for line in documented_commands(bundle.name) if line not in docs]
    if missing:
        raise ValueError(f"{bundle.name}: docs/README.md must give the MONAI Label command: {missing[0]}")
    required = {"inference.json": "infer"}
    if "train.json" in bundle.configs:
        required["train.json"] = "train"
    for config, workflow_type in required.items():
        missing = missing_property_ids(bundle, config, MONAILABEL_PROPERTIES, workflow_type)
        if missing:
            raise ValueError(f"{bundle.name}: configs/{config} lacks the ids MONAI Label sets or reads: {missing}")
    for key in ("preprocessing", "postprocessing"):
        target = (bundle.parser("inference.json").get(key) or {}).get("_target_", "Compose")
        if target.rpartition(".")[2] != "Compose":
            raise ValueError(
                f"{bundle.name}: configs/inference.json '{key}' is {target}, not a Compose; MONAI "
                "Label iterates over its transforms"
            )
    fmt = bundle.metadata["network_data_format"]
    input_key = next(iter(fmt["inputs"]))
    if input_key != "image" or "'image'" not in str(bundle.parser("inference.json").get("preprocessing")):
        raise ValueError(
            f"{bundle.name}: MONAI Label passes the input file as 'image': the metadata's first input "
            f"(here '{input_key}') and the preprocessing must use that key"
        )
    channel_def = next(iter(fmt["outputs"].values())).get("channel_def", {})
    if sorted(channel_def, key=lambda k: int(k) if k.isdigit() else -1) != [str(i) for i in range(len(channel_def))]:
        raise ValueError(
            f"{bundle.name}: output channel_def keys must be '0'..'{len(channel_def) - 1}', got {sorted(channel_def)}"
        )
    lowered = [str(v).lower() for v in channel_def.values()]
    if not channel_def or len(set(lowered)) != len(lowered) or not all(lowered):
        raise ValueError(
            f"{bundle.name}: output channel_def names must be non-empty and distinct in lower case "
            f"(MONAI Label's label map), got {list(channel_def.values())}"
        )
