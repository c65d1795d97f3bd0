"""Train and evaluate the three cardiac bundles on synthetic phantoms, and draw the chain figure of the docs.

    python benchmarks/cmr_chain.py --output_dir cmr_benchmark [--num_cases 24 --image_size 64 ...]

Steps, each with the bundles' own configs (``train.json`` then ``evaluate.json``; figures on the test cases, patients
never seen in training):

1. sample data: ``num_cases`` phantoms in the cardiac layout, patient-wise splits;
2. motion estimation: photometric error reduction against the identity transform, folding fraction;
3. LGE-to-cine registration: myocardium Dice before and after, folding fraction;
4. MI segmentation on the trained (frozen) motion network: Dice and HD95.

Writes ``<output_dir>/results.json``, ``<output_dir>/results.md`` (a table), with ``--report`` the same JSON at that
path (the MI segmentation card renders ``docs/chain.json``) and, with ``--figure``, a PNG of the chain on one test
slice: ED, ES, flow, strain, predicted and true infarct over ED. The documented run::

    python benchmarks/cmr_chain.py --output_dir /tmp/cmr_chain --report bundles/cmr_mi_segmentation/docs/chain.json \
        --figure bundles/cmr_mi_segmentation/docs/chain.png
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

import numpy as np
import torch

from medzoo.cmr.chain import predict_mi
from medzoo.cmr.datasets import prepare_cmr
from medzoo.cmr.io import read_mask_slice
from medzoo.cmr.motion import load_frozen
from medzoo.cmr.synthetic import generate_cmr_sample
from medzoo.data import load_datalist
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

#: The three cardiac bundles, in the order the chain trains them.
CHAIN = ("cmr_motion_estimation", "cmr_lge_registration", "cmr_mi_segmentation")


def train_and_evaluate(name: str, root: Path, dataset_dir: Path, **overrides) -> tuple[dict, Path]:
    """Train bundle ``name`` and evaluate it on the test split; return its metrics and checkpoint."""
    bundle = Bundle(name)
    dirs = {
        "dataset_dir": str(dataset_dir),
        "ckpt_dir": str(root / name / "models"),
        "output_dir": str(root / name / "eval"),
    }
    settings = {**dirs, "progress_bar": False, **overrides}
    run_configs(bundle, ["train.json"], **settings)
    run_configs(bundle, ["train.json", "evaluate.json"], **settings)
    metrics = json.loads((root / name / "eval" / "metrics.json").read_text())
    return metrics, root / name / "models" / "model.pt"


def chain_figure(entry: dict, motion_checkpoint: Path, mi_checkpoint: Path, path: Path) -> Path:
    """ED, ES, flow (arrows on ED), strain, predicted (red) and true (green contour) infarct of one slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = Bundle("cmr_mi_segmentation").parser("inference.json")
    motion = load_frozen(parser.get_parsed_content("motion_network_def"), motion_checkpoint)
    mi_net = load_frozen(parser.get_parsed_content("network_def"), mi_checkpoint)
    out = predict_mi(entry["cine"], entry["cine_myo"], entry["slice_index"], motion, mi_net)
    truth = read_mask_slice(entry["cine_mi"], entry["slice_index"])
    ed, es = out["frames"]
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.6))
    for ax in axes:
        ax.axis("off")
    axes[0].imshow(ed, cmap="gray")
    axes[0].set_title("end-diastole (frame 0)")
    axes[1].imshow(es, cmap="gray")
    axes[1].set_title("end-systole (frame T//2)")
    axes[2].imshow(ed, cmap="gray")
    step = max(1, ed.shape[0] // 24)
    ys, xs = np.mgrid[0 : ed.shape[0] : step, 0 : ed.shape[1] : step]
    axes[2].quiver(
        xs,
        ys,
        out["ddf"][1][::step, ::step],
        -out["ddf"][0][::step, ::step],
        color="yellow",
        angles="xy",
        scale_units="xy",
        scale=0.5,
    )
    axes[2].set_title("displacement u (x2): ES(p) = ED(p + u)")
    strain = axes[3].imshow(out["strain"], cmap="magma")
    axes[3].contour(out["myo"], levels=[0.5], colors="cyan", linewidths=0.6)
    axes[3].set_title("strain magnitude, myocardium")
    fig.colorbar(strain, ax=axes[3], fraction=0.046)
    axes[4].imshow(ed, cmap="gray")
    axes[4].imshow(np.ma.masked_where(out["mi"] == 0, out["mi"]), cmap="autumn", alpha=0.6)
    axes[4].contour(truth, levels=[0.5], colors="lime", linewidths=0.8)
    axes[4].set_title("predicted MI (red), truth (green)")
    fig.suptitle(f"{Path(entry['cine']).parent.name}/{Path(entry['cine']).name} (synthetic, held out)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output_dir", default="cmr_benchmark")
    p.add_argument("--num_cases", type=int, default=24)
    p.add_argument("--slices_per_case", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--motion_epochs", type=int, default=40)
    p.add_argument("--registration_epochs", type=int, default=30)
    p.add_argument("--mi_epochs", type=int, default=60)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--learning_rate", type=float, default=0.003)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default=None, help="PNG path of the chain figure")
    p.add_argument("--report", default=None, help="also write the results JSON here (e.g. a bundle's docs/chain.json)")
    args = p.parse_args(argv)
    root = Path(args.output_dir)
    data = root / "data"
    generate_cmr_sample(
        data,
        num_cases=args.num_cases,
        slices_per_case=args.slices_per_case,
        frames=args.frames,
        image_size=args.image_size,
        seed=args.seed,
    )
    datalist = data / "datalist.json"
    prepare_cmr(data, datalist, require=["cine_myo", "lge", "lge_myo", "cine_mi"], seed=args.seed)
    common = {
        "spatial_size": [args.image_size] * 2,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "num_workers": 0,
        "seed": args.seed,
    }
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "figure", "report")}
    results = {
        "settings": settings,
        "date": datetime.date.today().isoformat(),
        "versions": {n: Bundle(n).metadata["version"] for n in CHAIN},
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
    }
    results["motion"], motion_ckpt = train_and_evaluate(
        "cmr_motion_estimation",
        root,
        data,
        max_epochs=args.motion_epochs,
        val_interval=max(1, args.motion_epochs // 4),
        **common,
    )
    results["registration"], _ = train_and_evaluate(
        "cmr_lge_registration",
        root,
        data,
        max_epochs=args.registration_epochs,
        val_interval=max(1, args.registration_epochs // 3),
        **common,
    )
    results["mi_segmentation"], mi_ckpt = train_and_evaluate(
        "cmr_mi_segmentation",
        root,
        data,
        max_epochs=args.mi_epochs,
        val_interval=max(1, args.mi_epochs // 6),
        motion_checkpoint=str(motion_ckpt),
        **common,
    )
    rows = [
        ("motion", "photometric error reduction vs identity", results["motion"]["photometric_reduction"]),
        ("motion", "folding fraction", results["motion"]["folding_fraction"]),
        ("registration", "myocardium Dice before", results["registration"]["myo_dice_before"]),
        ("registration", "myocardium Dice after", results["registration"]["myo_dice"]),
        ("registration", "folding fraction", results["registration"]["folding_fraction"]),
        ("MI segmentation", "Dice", results["mi_segmentation"]["mi_dice"]),
        ("MI segmentation", "HD95 (pixels)", results["mi_segmentation"]["mi_hd95"]),
    ]
    table = "| bundle | metric (test cases) | value |\n|---|---|---|\n" + "".join(
        f"| {b} | {m} | {v:.3f} |\n" for b, m, v in rows
    )
    (root / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.report:
        Path(args.report).write_text(json.dumps(results, indent=2) + "\n")
    (root / "results.md").write_text(table)
    print(table)
    if args.figure:
        entry = load_datalist(datalist, "test", data)[0]
        print(f"figure written to {chain_figure(entry, motion_ckpt, mi_ckpt, Path(args.figure))}")
    return results


if __name__ == "__main__":
    main()
