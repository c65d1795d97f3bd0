"""FLARE client script: one site's training of a medzoo bundle with MONAI's ``MonaiAlgo``, driven by FLARE's Client API.

FLARE runs this file (copied into the job's ``custom/`` folder with :data:`SETTINGS_FILE`) as a separate process on
each site. Each round it receives the global weights, trains the bundle's own ``train.json`` (with its own
validation on the site's validation split) for ``local_epochs`` epochs on the site's data, and sends the trained
weights back with the number of iterations it ran (FedAvg's weighting).

The site's data folder (the bundle's ``dataset_dir``, holding its ``datalist.json``) is ``--dataset_dir`` or, when
that is not given (a job exported for real sites), the environment variable ``MEDZOO_FL_DATASET_DIR`` set on the
site. Checkpoints, logs and the list of rounds trained (:data:`ROUNDS_DONE`) go to ``--workdir`` (default
``medzoo_federated/`` in the working directory). Every file
this process opens is listed in ``<workdir>/files_opened.json`` after each round (a Python audit hook), so a run can
show which data each site read (data loader worker processes, if the bundle is run with ``num_workers`` > 0, are not
covered).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

#: Job-wide settings written next to this script: bundle, configs, overrides, local_epochs, seed.
SETTINGS_FILE = "medzoo_federated.json"
#: Environment variable naming the site's data folder when ``--dataset_dir`` is not given.
DATASET_DIR_VARIABLE = "MEDZOO_FL_DATASET_DIR"
#: The list of files the client process opened, under its workdir.
FILES_OPENED = "files_opened.json"
#: The rounds the client trained (``[{"round", "iterations"}]``), under its workdir, rewritten after each round.
ROUNDS_DONE = "rounds.json"

_opened: set[str] = set()


def _record_open(event: str, args: tuple) -> None:
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.add(os.path.abspath(os.fsdecode(args[0])))


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", default=os.environ.get(DATASET_DIR_VARIABLE))
    parser.add_argument("--workdir", default="medzoo_federated")
    parser.add_argument("--settings", default=str(Path(__file__).with_name(SETTINGS_FILE)))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the site's client until the server ends the job; list the files opened in ``<workdir>/files_opened.json``."""
    sys.addaudithook(_record_open)
    args = _arguments(sys.argv[1:] if argv is None else argv)
    if not args.dataset_dir:
        sys.exit(f"error: no site data folder: pass --dataset_dir or set {DATASET_DIR_VARIABLE} on this site")
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        _run(args, workdir)
    finally:
        _write_opened(workdir)


def _write_opened(workdir: Path) -> None:
    (workdir / FILES_OPENED).write_text(json.dumps(sorted(_opened), indent=1))


def _run(args: argparse.Namespace, workdir: Path) -> None:
    import nvflare.client as flare
    import torch
    from monai.fl.client import MonaiAlgo
    from monai.fl.utils.constants import ExtraItems, FlStatistics
    from monai.fl.utils.exchange_object import ExchangeObject
    from monai.utils import set_determinism
    from nvflare.app_common.abstract.fl_model import FLModel, ParamsType

    from medzoo.zoo import Bundle

    settings = json.loads(Path(args.settings).read_text())
    bundle = Bundle(settings["bundle"])
    flare.init()
    site = flare.get_site_name()
    set_determinism(seed=settings["seed"])
    if settings.get("threads"):
        torch.set_num_threads(settings["threads"])
    algo = MonaiAlgo(
        bundle_root=str(bundle.root),
        local_epochs=settings["local_epochs"],
        send_weight_diff=False,
        config_train_filename=[str(bundle.config_path(c)) for c in settings["configs"]],
        train_kwargs={
            **settings["overrides"],
            "dataset_dir": str(Path(args.dataset_dir).resolve()),
            "ckpt_dir": str(workdir / "models"),
            "output_dir": str(workdir / "eval"),
        },
        config_evaluate_filename=None,
    )
    algo.initialize(extra={ExtraItems.CLIENT_NAME: site})
    rounds = []
    try:
        while flare.is_running():
            received = flare.receive()
            if received is None:
                break
            weights = {k: torch.as_tensor(v) for k, v in received.params.items()}
            algo.train(ExchangeObject(weights=weights))
            trained = algo.get_weights()
            iterations = trained.statistics[FlStatistics.NUM_EXECUTED_ITERATIONS]
            flare.send(
                FLModel(
                    params=trained.weights, params_type=ParamsType.FULL, meta={"NUM_STEPS_CURRENT_ROUND": iterations}
                )
            )
            rounds.append({"round": received.current_round, "iterations": iterations})
            # FLARE may stop this process once the last result is sent: the records are complete after each round
            _write_opened(workdir)
            (workdir / ROUNDS_DONE).write_text(json.dumps(rounds))
    finally:
        algo.finalize()


if __name__ == "__main__":
    main()
