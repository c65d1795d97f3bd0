"""Write deterministic, untrained initial weights of the three cardiac networks into their bundles' models/ folders.

    python scripts/cmr_init_weights.py [--seed 0] [--bundles_dir bundles]

Writes ``models/model.pt`` of cmr_motion_estimation, cmr_lge_registration and cmr_mi_segmentation, and the MI bundle's
``models/motion_model.pt``: the same seed gives the same tensors. These weights are NOT trained; they let the chain and the inference configs run end to end
(``medzoo cmr-infer`` needs the motion and MI checkpoints). Train the bundles for real weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medzoo.paths import BUNDLES_DIR
from medzoo.weights import write_frozen_init_weights, write_init_weights
from medzoo.zoo import Bundle

CARDIAC_BUNDLES = ("cmr_motion_estimation", "cmr_lge_registration", "cmr_mi_segmentation")


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bundles_dir", default=str(BUNDLES_DIR))
    args = parser.parse_args(argv)
    written = []
    for name in CARDIAC_BUNDLES:
        bundle = Bundle(name, args.bundles_dir)
        files = [write_init_weights(bundle, bundle.root / "models" / "model.pt", seed=args.seed)]
        files += write_frozen_init_weights(bundle, seed=args.seed)  # the MI bundle's own copy of the motion network
        print(f"{name}: initial (untrained) weights -> {', '.join(map(str, files))}")
        written += files
    return written


if __name__ == "__main__":
    main()
