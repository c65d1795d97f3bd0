"""A bundle's own evaluation output, copied into the ``eval_metrics`` of its ``configs/metadata.json``.

``evaluate.json`` writes ``<output_dir>/metrics.json`` (e.g. ``{"mean_auroc": 0.71, "per_class_auroc": {...},
"num_samples": 90}``); :func:`record_eval_metrics` copies its numbers into the metadata, with a ``setting`` entry that
says what they were measured on, so the figures in a bundle always come from a run and never from typing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .cards import write_metadata_sections
from .fileio import atomic_write_text
from .zoo import Bundle

__all__ = ["QUICKSTART_SETTING", "eval_metrics_from", "metric_names", "quickstart_setting", "record_eval_metrics"]

#: What ``medzoo quickstart <bundle>`` evaluates: the held-out test split of the synthetic sample data, after training
#: with the demo settings.
QUICKSTART_SETTING = (
    "medzoo quickstart {name}: synthetic phantoms of configs/sample_data.json, trained with configs/train.json and "
    "evaluated with configs/evaluate.json on the held-out test split, both with configs/demo.json merged; not real "
    "data, not a measure of clinical performance"
)


def quickstart_setting(bundle: Bundle, reason: str | None = None, **overrides) -> str:
    """The ``setting`` of a ``medzoo quickstart`` run of ``bundle``: :data:`QUICKSTART_SETTING`, or with ``overrides``
    (config ids set on every step, e.g. ``max_epochs=3``) the equivalent ``medzoo.quickstart.run_quickstart`` call
    and ``reason``, why it departs from the bundle's demo settings (or why a bundle without ``configs/demo.json``
    needs them)."""
    if not overrides:
        return QUICKSTART_SETTING.format(name=bundle.name)
    call = ", ".join([f"Bundle({bundle.name!r})", *(f"{key}={value!r}" for key, value in overrides.items())])
    merged = "configs/demo.json and these overrides" if "demo.json" in bundle.configs else "these overrides"
    return (
        f"medzoo.quickstart.run_quickstart({call}), {reason or 'overrides'}: synthetic phantoms of "
        f"configs/sample_data.json, trained with configs/train.json and evaluated with configs/evaluate.json on "
        f"the held-out test split, all with {merged}; not real data, not a measure of clinical performance"
    )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def eval_metrics_from(metrics: dict, setting: str, digits: int = 4) -> dict:
    """``eval_metrics`` from an evaluation output: every number (floats rounded to ``digits`` decimals), nested
    per-class dictionaries flattened to ``"<key>/<class>"``, then ``setting``. Entries that are not numbers (e.g. a
    class whose AUROC is undefined, ``null``) are left out.

    Raises:
        ValueError: the output holds no finite number, or already has a ``setting`` entry.
    """
    if "setting" in metrics:
        raise ValueError("the evaluation output has its own 'setting' entry, which would be overwritten")
    flat: dict[str, float | int] = {}
    for key, value in metrics.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, number in items:
            if _is_number(number) and math.isfinite(number):
                flat[key if sub is None else f"{key}/{sub}"] = (
                    round(number, digits) if isinstance(number, float) else number
                )
    if not flat:
        raise ValueError("the evaluation output holds no finite number")
    return {**flat, "setting": setting}


def metric_names(eval_metrics: dict) -> list[str]:
    """The names of the metrics in ``eval_metrics``, sorted: a per-class entry ``"<metric>/<class>"`` (or a nested
    ``{"<metric>": {class: value}}``) gives ``<metric>`` once; what describes the run rather than the model is left
    out: ``setting`` and counts (``num_*`` such as ``num_samples``, the held-out cases, and ``<metric>_non_finite``,
    the cases where a metric was undefined). E.g. ``{"mean_auroc": .9, "per_class_auroc/Mass": .8,
    "num_samples": 90, "setting": "..."}`` -> ``["mean_auroc", "per_class_auroc"]``."""
    names = {key.split("/", 1)[0] for key in eval_metrics}
    return sorted(n for n in names if n != "setting" and not n.startswith("num_") and not n.endswith("_non_finite"))


def record_eval_metrics(
    bundle: Bundle, metrics_file: str | os.PathLike | None = None, setting: str | None = None
) -> dict:
    """Copy ``metrics_file`` (default: the bundle's ``eval/metrics.json``, as written by ``evaluate.json``) into the
    ``eval_metrics`` of ``configs/metadata.json`` (rewritten atomically, everything else unchanged), refresh the
    model card's "Evaluation figures" section (:mod:`medzoo.cards`) and return them.

    ``setting`` describes the run (default :data:`QUICKSTART_SETTING`, the run of ``medzoo quickstart``).

    Raises:
        FileNotFoundError: no evaluation output; run the bundle's evaluate.json (e.g. ``medzoo quickstart``) first.
        ValueError: the output is not a JSON object of metrics.
    """
    path = Path(metrics_file) if metrics_file is not None else bundle.root / "eval" / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{bundle.name}: no evaluation output at {path}; run its evaluate.json first "
            f"(medzoo quickstart {bundle.name})"
        )
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{bundle.name}: {path} is not JSON ({e})") from e
    if not isinstance(metrics, dict):
        raise ValueError(f"{bundle.name}: {path} holds {type(metrics).__name__}, not an object of metrics")
    recorded = eval_metrics_from(metrics, setting or QUICKSTART_SETTING.format(name=bundle.name))
    meta = bundle.metadata
    meta["eval_metrics"] = recorded
    atomic_write_text(bundle.metadata_file, json.dumps(meta, indent=4) + "\n")
    write_metadata_sections(bundle)
    return recorded
