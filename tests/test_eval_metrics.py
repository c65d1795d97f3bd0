"""Every bundle's ``eval_metrics`` come from a run of its own ``evaluate.json`` (``medzoo.eval_metrics``)."""

import math

import pytest

from medzoo.eval_metrics import QUICKSTART_SETTING, metric_names, quickstart_setting
from medzoo.zoo import Bundle, bundle_names

BUNDLES = bundle_names()


@pytest.mark.parametrize("name", BUNDLES)
def test_every_bundle_records_the_figures_of_its_own_evaluation(name):
    """No bundle is exempt: each has an ``evaluate.json``, so each records what a run of it measured, with the
    ``setting`` of that run (as ``record_eval_metrics`` writes it after ``medzoo quickstart``)."""
    bundle = Bundle(name)
    recorded = bundle.metadata["eval_metrics"]
    assert "evaluate.json" in bundle.configs
    assert recorded, f"{name}: eval_metrics is empty; run medzoo quickstart {name}, then record_eval_metrics"
    setting = recorded.get("setting")
    assert isinstance(setting, str) and "synthetic phantoms" in setting and "held-out test split" in setting
    assert setting.startswith((f"medzoo quickstart {name}: ", f"medzoo.quickstart.run_quickstart(Bundle({name!r})"))
    assert metric_names(recorded), f"{name}: eval_metrics holds no metric, only {sorted(recorded)}"
    numbers = {k: v for k, v in recorded.items() if k != "setting"}
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers.values())
    assert isinstance(recorded.get("num_samples"), int) and recorded["num_samples"] > 0


def test_metric_names_leave_out_what_describes_the_run():
    recorded = {
        "mean_dice": 0.9,
        "mean_dice_per_class/liver": 0.91,
        "mean_dice_per_class/spleen": 0.88,
        "mean_dice_non_finite": 0,
        "per_class_auroc": {"Mass": 0.7},
        "num_samples": 18,
        "num_train": 72,
        "margin": 0.1,
        "setting": "s",
    }
    assert metric_names(recorded) == ["margin", "mean_dice", "mean_dice_per_class", "per_class_auroc"]
    assert metric_names({"num_samples": 3, "setting": "s"}) == []


def test_quickstart_setting_names_the_overrides_of_the_run():
    bundle = Bundle("cmr_motion_estimation")
    assert quickstart_setting(bundle) == QUICKSTART_SETTING.format(name=bundle.name)
    setting = quickstart_setting(bundle, "fewer epochs", max_epochs=6, val_interval=3)
    assert setting.startswith(
        "medzoo.quickstart.run_quickstart(Bundle('cmr_motion_estimation'), max_epochs=6, "
        "val_interval=3), fewer epochs: synthetic phantoms"
    )
    assert "with configs/demo.json and these overrides" in setting
    without_demo = quickstart_setting(Bundle("cmr_lge_registration"), "no demo settings", max_epochs=6)
    assert "demo.json" not in without_demo and "with these overrides" in without_demo
