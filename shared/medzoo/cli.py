"""``medzoo``: the zoo's command line (python-fire).

Examples::

    medzoo list
    medzoo info cxr14_densenet121_classification
    medzoo sample-data cxr14_densenet121_classification
    medzoo quickstart
    medzoo verify [<bundle>] [--workflows=False]
    medzoo init-weights <bundle>
    medzoo convert chexnet <checkpoint> --output_dir my_bundle
    medzoo index [--check]
    medzoo cmr-infer --input_cmr <cine.nii.gz> --input_mask <myo.nii.gz> --slice_index 0 --output mi.nii.gz \
        --motion_checkpoint <motion.pt> --checkpoint <mi.pt>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fire

from .paths import bundle_names
from .zoo import INDEX_FILE, Bundle, build_index, write_index

__all__ = ["ZooCLI", "main"]


class ZooCLI:
    """Tools for the bundles of this zoo. Every bundle also runs directly with ``python -m monai.bundle run``."""

    def list(self) -> None:
        """Print one line per bundle: name, version, task."""
        for name in bundle_names():
            meta = Bundle(name).metadata
            print(f"{name:40s} {meta['version']:8s} {meta['task']}")

    def info(self, bundle: str) -> None:
        """Print the index entry of a bundle (network, parameters, inputs/outputs, labels, configs, weights)."""
        from .zoo import index_entry

        print(json.dumps(index_entry(Bundle(bundle)), indent=2))

    def sample_data(self, bundle: str, dataset_dir: str | None = None, **overrides) -> str:
        """Generate the bundle's synthetic sample data (its ``configs/sample_data.json``) and return the folder."""
        from .workflows import run_configs

        b = Bundle(bundle)
        if dataset_dir is not None:
            overrides["dataset_dir"] = dataset_dir
        workflow = run_configs(b, ["sample_data.json"], **overrides)
        folder = workflow.parser.get_parsed_content("dataset_dir")
        print(f"sample data written to {folder}")
        return folder

    def init_weights(self, bundle: str, output: str | None = None, seed: int = 0) -> str:
        """Write deterministic initial weights (not trained!) to ``models/model.pt`` or ``output``."""
        from .verify import write_init_weights

        b = Bundle(bundle)
        path = write_init_weights(b, output or b.root / "models" / "model.pt", seed=seed)
        print(f"initial (untrained) weights written to {path}")
        return str(path)

    def verify(self, bundle: str | None = None, workflows: bool = True) -> None:
        """Run the zoo verification on one bundle or all of them; exits non-zero on the first failure."""
        from .verify import verify_bundle

        for name in [bundle] if bundle else bundle_names():
            verify_bundle(name, workflows=workflows)
            print(f"{name}: verified")

    def index(self, check: bool = False) -> None:
        """Rebuild ``zoo_index.json`` from the bundles; with ``--check``, fail if the file on disk is stale."""
        if check:
            current = json.loads(Path(INDEX_FILE).read_text()) if Path(INDEX_FILE).is_file() else None
            if current != build_index():
                sys.exit(f"{INDEX_FILE} is stale: run `medzoo index`")
            print(f"{INDEX_FILE} is up to date")
            return
        print(f"wrote {write_index()}")

    def convert(self, source: str, checkpoint: str, output_dir: str, bundle: str = "cxr14_densenet121_classification") -> str:
        """Convert a public checkpoint (``chexnet`` or ``xrv``) into a copy of ``bundle`` at ``output_dir``."""
        from .cxr.bundle_convert import convert_to_bundle

        path = convert_to_bundle(source, checkpoint, Bundle(bundle).root, output_dir)
        print(f"converted bundle written to {path}")
        return str(path)

    def cmr_infer(self, input_cmr: str, input_mask: str, slice_index: int, output: str, motion_checkpoint: str,
                  checkpoint: str, es_frame: int | None = None, threshold: float = 0.5, device: str | None = None) -> str:
        """Cardiac chain on one cine slice: frozen motion network -> MI segmentation -> NIfTI with the input's header.

        ``input_cmr`` is a cine slice (T, H, W), ``input_mask`` the case's myocardium mask (S, H, W) and
        ``slice_index`` its slice for this cine; see :mod:`medzoo.cmr.chain`.
        """
        from .cmr.chain import run_chain

        path = run_chain(input_cmr, input_mask, slice_index, output, motion_checkpoint, checkpoint, es_frame=es_frame,
                         threshold=threshold, device=device)
        print(f"MI mask written to {path}")
        return str(path)

    def quickstart(self, bundle: str = "cxr14_densenet121_classification") -> None:
        """The main job: sample data, a short training (``configs/demo.json``), evaluation and inference.

        Prints the held-out metrics and where every output is.
        """
        from .quickstart import run_quickstart

        run_quickstart(Bundle(bundle))


def main() -> None:
    fire.Fire(ZooCLI, name="medzoo")


if __name__ == "__main__":
    main()
