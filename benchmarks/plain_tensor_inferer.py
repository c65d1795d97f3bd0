"""What ``medzoo.inferers.PlainTensorInferer`` saves: the network on plain tensors instead of MONAI MetaTensors.

Per bundle, in one run on this CPU:

- forward: the bundle's network (initial weights) on a random batch of its input shape, as a ``torch.Tensor`` and as
  a ``MetaTensor``, timed alternately (median of ``--runs`` passes each) at the bundle's batch size;
- end-to-end: the bundle's ``inference.json`` on its generated sample data (``medzoo.bench.measure.measure_inference``,
  eager backend), as shipped and with the wrapped inferer alone, alternately ``--repeats`` times; the fastest
  steady-state throughput of each is kept.

Writes ``<output>.json`` and ``<output>.md``::

    python benchmarks/plain_tensor_inferer.py --output docs/plain_tensor_inferer
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from monai.data import MetaTensor

from medzoo.bench.runner import in_subprocess
from medzoo.bench.timing import report_stamp
from medzoo.export import example_input
from medzoo.fileio import publish_report
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

DEFAULT_BUNDLES = (
    "cxr14_densenet121_classification",
    "cxr14_mobilenetv3_distilled_classification",
    "cxr14_hybridmednet_efficientnetv2_s_classification",
    "cmr_motion_estimation",
)


def forward_times(bundle: Bundle, batch_size: int, runs: int) -> dict:
    """Median forward time (ms) of the bundle's network on a plain tensor and on a MetaTensor, timed alternately."""
    network = bundle.network().eval()
    plain = example_input(bundle, batch_size=batch_size)
    meta = MetaTensor(plain.clone(), meta={"filename_or_obj": "example"})
    times: dict[str, list[float]] = {"plain": [], "metatensor": []}
    with torch.inference_mode():
        for x in (plain, meta, plain, meta):  # warm-up
            network(x)
        for _ in range(runs):
            for name, x in (("plain", plain), ("metatensor", meta)):
                start = time.perf_counter()
                network(x)
                times[name].append(1000 * (time.perf_counter() - start))
    medians = {f"{name}_ms": statistics.median(values) for name, values in times.items()}
    return {"batch_size": batch_size, **medians, "plain_speedup": medians["metatensor_ms"] / medians["plain_ms"]}


def end_to_end(bundle: Bundle, dataset_dir: Path, workdir: Path, repeats: int) -> dict:
    """Fastest steady-state images/s of ``inference.json`` as shipped and with its inner inferer only."""
    inner = bundle.parser("inference.json").get("inferer")["inferer"]
    variants = {"plain_tensor_inferer": {}, "wrapped_inferer_only": {"inferer": inner}}
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, overrides in variants.items():
            result = in_subprocess(
                "inference",
                bundle,
                backend="torch",
                dataset_dir=str(dataset_dir),
                workdir=str(workdir / name),
                **overrides,
            )
            best[name] = max(best.get(name, 0.0), result["steady_images_per_s"])
    return {
        "inputs": result["inputs"],
        "batch_size": result["batch_size"],
        "num_workers": result["num_workers"],
        **{f"{name}_images_per_s": value for name, value in best.items()},
        "plain_speedup": best["plain_tensor_inferer"] / best["wrapped_inferer_only"],
    }


def markdown(report: dict) -> str:
    lines = [
        f"`benchmarks/plain_tensor_inferer.py`, {report['measured_at']}, {report['machine']}; one run, "
        "ratios taken in the same run.",
        "",
        "| bundle | forward batch | forward, tensor (ms) | forward, MetaTensor (ms) | forward speed-up | "
        "end-to-end, plain (img/s) | end-to-end, MetaTensor (img/s) | end-to-end speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["bundles"].items():
        f, e = row["forward"], row["end_to_end"]
        lines.append(
            f"| {name} | {f['batch_size']} | {f['plain_ms']:.1f} | {f['metatensor_ms']:.1f} | "
            f"{f['plain_speedup']:.2f}x | {e['plain_tensor_inferer_images_per_s']:.1f} | "
            f"{e['wrapped_inferer_only_images_per_s']:.1f} | {e['plain_speedup']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="+", default=list(DEFAULT_BUNDLES))
    parser.add_argument("--runs", type=int, default=10, help="timed forward passes per input type")
    parser.add_argument("--repeats", type=int, default=2, help="end-to-end runs per variant")
    parser.add_argument("--output", default=None, help="report path without suffix (default: print only)")
    args = parser.parse_args()
    report = {**report_stamp(), "bundles": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.bundles:
            bundle = Bundle(name)
            config = bundle.parser("inference.json")
            batch_size = int(config.get("batch_size", 1))
            data = Path(scratch) / name / "data"
            run_configs(bundle, ["sample_data.json"], dataset_dir=str(data))
            report["bundles"][name] = {
                "forward": forward_times(bundle, batch_size, args.runs),
                "end_to_end": end_to_end(bundle, data, Path(scratch) / name, args.repeats),
            }
            print(json.dumps({name: report["bundles"][name]}), flush=True)
    table = markdown(report)
    publish_report(args.output, report, table)


if __name__ == "__main__":
    main()
