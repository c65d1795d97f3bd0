"""The main job: a bundle's whole life on its own synthetic sample data, in a few minutes on a CPU."""

from __future__ import annotations

import json
import time

from .workflows import run_configs
from .zoo import Bundle

__all__ = ["run_quickstart"]


def run_quickstart(bundle: Bundle) -> dict:
    """Generate sample data, train with ``configs/demo.json``, evaluate on the held-out test split, run inference.

    Outputs go to the bundle's defaults: ``sample_data/``, ``models/model.pt``, ``eval/``. Returns the metrics.
    """
    demo = ["demo.json"] if "demo.json" in bundle.configs else []
    timings: dict[str, float] = {}

    def step(name: str, configs: list[str], workflow_type: str | None = None):
        print(f"\n=== {bundle.name}: {name} ===", flush=True)
        start = time.perf_counter()
        workflow = run_configs(bundle, configs, workflow_type=workflow_type)
        timings[name] = time.perf_counter() - start
        return workflow

    data = step("sample data", ["sample_data.json", *demo])
    train = step("train", ["train.json", *demo], "train")
    evaluate = step("evaluate (held-out test split)", ["train.json", "evaluate.json", *demo], "eval")
    infer = step("inference", ["inference.json", *demo], "infer")

    metrics_file = evaluate.parser.get_parsed_content("output_dir") + "/metrics.json"
    with open(metrics_file) as f:
        metrics = json.load(f)
    out_dir = infer.parser.get_parsed_content("output_dir")
    print(f"\n=== {bundle.name}: done ===")
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"  {key}: {value:.4f}")
    print("  per class:", ", ".join(f"{k} {v:.3f}" for k, v in metrics.get("per_class_auroc", {}).items() if v is not None))
    print(f"  sample data:  {data.parser.get_parsed_content('dataset_dir')}")
    print(f"  weights:      {train.parser.get_parsed_content('ckpt_dir')}/model.pt")
    print(f"  metrics:      {metrics_file}")
    print(f"  predictions:  {out_dir}/predictions.csv")
    print(f"  TensorBoard:  tensorboard --logdir {train.parser.get_parsed_content('output_dir')}")
    print("  time:         " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    print("  Research use only: not for clinical use.")
    return metrics
