"""Overhead of the segmentation bundle's sliding-window inference over its bare network, on a CT-sized volume.

Each ``sw_batch_size`` runs in a fresh process: the bundle's ``network_def`` (deterministic initial weights: time does
not depend on the weight values) runs through the bundle's ``inferer`` (``SlidingWindowInferer``, Gaussian blending,
the config's ``patch_size`` and ``sw_overlap``) on a random [1, 1, *shape] volume, followed by the argmax to a uint8
label map (``channel_argmax``). Reported per run: windows, the wall time of the inference, the time of the bare
network on the same number of windows in batches of ``sw_batch_size`` (random patches of the window size), and
``sliding_window_overhead`` = inference time / network time - 1: what window extraction, Gaussian blending,
accumulation and the argmax add. After one untimed pass of each, the two are timed alternately ``--repeats`` times
and their medians compared (a shared machine's speed drifts; alternating exposes both to the same drift). The
process's peak resident memory is listed too; the memory of the whole inference pipeline, stage by stage, is
``benchmarks/volume_memory.py``'s report.

``--variants`` measures other networks of the bundle (override configs) in the same invocation, right after the base
network at each ``sw_batch_size``; their rows carry ``relative_to_base``: time and peak memory as multiples of the
base network's.

Example::

    python benchmarks/sliding_window_overhead.py --shape 192 192 128 --sw_batch_sizes 4 1 --output overhead.json
    python benchmarks/sliding_window_overhead.py --shape 192 192 128 --sw_batch_sizes 4 1 --repeats 2 \\
        --variants swin_unetr.json --output bundles/msd_unet3d_segmentation/docs/sliding_window_overhead.json
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def measure(bundle: str, shape: list[int], sw_batch_size: int, configs: list[str], repeats: int = 3) -> dict:
    """One measurement in this process."""
    import statistics

    import torch

    from medzoo.volume.transforms import channel_argmax
    from medzoo.zoo import Bundle

    parser = Bundle(bundle).parser(
        "inference.json", *configs, sw_batch_size=sw_batch_size, device="$torch.device('cpu')"
    )
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").eval()
    inferer = parser.get_parsed_content("inferer")
    roi = list(inferer.roi_size)
    before = _peak_rss_mib()
    volume = torch.rand(1, 1, *shape)
    steps = [max(1, int(r * (1 - inferer.overlap))) for r in roi]
    windows = math.prod(math.ceil(max(s - r, 0) / st) + 1 for s, r, st in zip(shape, roi, steps))
    patches = torch.rand(sw_batch_size, 1, *roi)

    def sliding_window() -> torch.Tensor:
        return channel_argmax(inferer(volume, network), dim=1).to(torch.uint8)

    def network_alone() -> None:  # as many windows, in batches of sw_batch_size: sliding window adds the rest
        for first in range(0, windows, sw_batch_size):
            network(patches[: min(sw_batch_size, windows - first)])

    times: dict[str, list[float]] = {"sliding_window": [], "network": []}
    with torch.no_grad():
        labels = sliding_window()  # untimed first passes: allocations, the Gaussian weight map
        network_alone()
        for _ in range(repeats):
            for name, run in (("sliding_window", sliding_window), ("network", network_alone)):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    seconds, network_seconds = statistics.median(times["sliding_window"]), statistics.median(times["network"])
    return {
        "bundle": bundle,
        "configs": configs,
        "volume_shape": shape,
        "roi_size": roi,
        "overlap": inferer.overlap,
        "sw_batch_size": sw_batch_size,
        "windows": windows,
        "output_shape": list(labels.shape),
        "torch_threads": torch.get_num_threads(),
        "repeats": repeats,
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "peak_rss_increase_mib": round(_peak_rss_mib() - before, 1),
        "seconds": round(seconds, 3),
        "network_seconds": round(network_seconds, 3),
        "sliding_window_overhead": round(seconds / network_seconds - 1, 3),
    }


def measure_in_subprocess(bundle: str, shape: list[int], sw_batch_size: int, configs: list[str], repeats: int) -> dict:
    """``measure`` in a fresh process (its peak memory is that run's alone)."""
    command = [
        sys.executable,
        __file__,
        "--child",
        "--bundle",
        bundle,
        "--shape",
        *map(str, shape),
        "--sw_batch_sizes",
        str(sw_batch_size),
        "--repeats",
        str(repeats),
        "--configs",
        *configs,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(configs) or 'default'} at sw_batch_size {sw_batch_size} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def relative_to(run: dict, base: dict) -> dict:
    """A variant's time and memory as multiples of the base network's, measured at the same batch in the same
    invocation."""
    return {
        "seconds": round(run["seconds"] / base["seconds"], 3),
        "network_seconds": round(run["network_seconds"] / base["network_seconds"], 3),
        "peak_rss": round(run["peak_rss_mib"] / base["peak_rss_mib"], 3),
        "peak_rss_increase": round(run["peak_rss_increase_mib"] / base["peak_rss_increase_mib"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="msd_unet3d_segmentation")
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
    parser.add_argument("--sw_batch_sizes", type=int, nargs="+", default=[4])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each, alternating")
    parser.add_argument(
        "--configs", nargs="*", default=[], help="override configs merged on inference.json, e.g. attention_unet.json"
    )
    parser.add_argument(
        "--variants",
        nargs="*",
        default=[],
        help="network override configs (e.g. swin_unetr.json), each measured after the base network at every "
        "sw_batch_size, with its time and memory relative to the base's",
    )
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.bundle, args.shape, args.sw_batch_sizes[0], args.configs, args.repeats)))
        return
    results = []
    for sw_batch_size in args.sw_batch_sizes:
        base = measure_in_subprocess(args.bundle, args.shape, sw_batch_size, args.configs, args.repeats)
        results.append(base)
        print(json.dumps(base), flush=True)
        for variant in args.variants:
            run = measure_in_subprocess(args.bundle, args.shape, sw_batch_size, [*args.configs, variant], args.repeats)
            run["relative_to_base"] = relative_to(run, base)
            results.append(run)
            print(json.dumps(run), flush=True)
    if args.output:
        from medzoo.fileio import atomic_write_text

        atomic_write_text(args.output, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
