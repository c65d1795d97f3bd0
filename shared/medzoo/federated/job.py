"""A FLARE FedAvg job that trains a bundle's own ``train.json`` on each site, and its run in FLARE's simulator.

The job (NVFlare's PyTorch ``FedAvgRecipe``):

- server: FedAvg over ``rounds`` rounds, starting from the weights in ``initial_model.pt`` (shipped in the server's
  ``custom/`` folder), the network built from the bundle's configs (:class:`medzoo.federated.network.BundleNetwork`),
  the global model after each round saved by FLARE's ``PTFileModelPersistor`` (``FL_global_model.pt``);
- clients: :mod:`medzoo.federated.client` as a separate process per site, with the job-wide settings
  (:data:`~medzoo.federated.client.SETTINGS_FILE`: bundle, configs, config overrides, local epochs, seed) next to it.

:func:`run_federated` writes one phantom data set per site (the bundle's ``sample_data.json`` with its own seed and
folder, so no patient is shared between sites) and one held-out set, runs the job in FLARE's simulator with one
client per site, and writes the global model after the last round as the bundle's ``model.pt``, which
``evaluate.json`` reads. :func:`export_job` writes the same job as a folder for ``nvflare job submit`` to real sites,
each of which names its data folder with ``MEDZOO_FL_DATASET_DIR``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import UserFileExistsError, UserValueError
from ..zoo import Bundle
from . import client

__all__ = [
    "FederatedRun",
    "build_recipe",
    "check_trainable",
    "evaluate_held_out",
    "export_job",
    "run_federated",
    "site_names",
    "write_site_data",
]

#: The global model FLARE's ``PTFileModelPersistor`` writes after each round, under the server's run folder.
GLOBAL_MODEL_FILE = "FL_global_model.pt"
#: The initial weights shipped in the server app's ``custom/`` folder.
INITIAL_MODEL_FILE = "initial_model.pt"
#: The client script (a copy of :mod:`medzoo.federated.client`) in the client apps' ``custom/`` folder.
CLIENT_SCRIPT = "medzoo_client.py"


def site_names(clients: int) -> list[str]:
    """FLARE's simulator names for ``clients`` sites: ``site-1`` ... ``site-N``."""
    return [f"site-{i}" for i in range(1, clients + 1)]


def check_trainable(bundle: Bundle, clients: int, rounds: int) -> None:
    """Raise :class:`~medzoo.errors.UserError` (one line) for a bundle without ``train.json``, fewer than one client or
    round, or NVFlare not installed."""
    import importlib.util

    if importlib.util.find_spec("nvflare") is None:
        raise UserValueError("federated training needs NVIDIA FLARE: pip install 'medzoo[fl]' (nvflare>=2.9,<3)")
    if "train.json" not in bundle.configs:
        raise UserValueError(
            f"bundle {bundle.name} has no configs/train.json ({bundle.root / 'configs'}): only a trainable bundle "
            "can be trained federated; pick one with train.json (medzoo list)"
        )
    if clients < 1:
        raise UserValueError(f"--clients {clients}: a federated run needs at least 1 client; pass --clients 2 or more")
    if rounds < 1:
        raise UserValueError(f"--rounds {rounds}: a federated run needs at least 1 round; pass --rounds 1 or more")


def build_recipe(
    bundle: Bundle,
    clients: int,
    rounds: int,
    site_args: dict[str, str] | None = None,
    configs: tuple[str, ...] = ("train.json",),
    overrides: dict[str, Any] | None = None,
    local_epochs: int = 1,
    seed: int = 0,
    bundle_ref: str | None = None,
    command: str = "python3 -u",
    threads: int | None = None,
):
    """The FedAvg recipe of ``bundle`` for ``clients`` sites and ``rounds`` rounds, built in the working directory
    (use :func:`staged`): the files the job ships (client script, settings, initial weights) are written there under
    the names the job refers to them by, so FLARE copies them flat into the apps' ``custom/`` folders.

    Args:
        site_args: per-site client arguments (``{"site-1": "--dataset_dir ... --workdir ..."}``); without them every
            site reads ``MEDZOO_FL_DATASET_DIR``.
        configs: bundle configs merged for training (``train.json`` first, e.g. ``quick.json`` after it).
        overrides: config ids set on top of ``configs`` on every site (not the data and output folders).
        local_epochs: epochs each site trains per round.
        seed: seed of the initial weights and of each site's training.
        bundle_ref: how the sites name the bundle (default: its folder on this machine).
        command: how the sites start Python for the client script.
        threads: PyTorch intra-op threads of each client (default: PyTorch's); the simulated sites share one machine.
    """
    import torch
    from nvflare.app_opt.pt.recipes.fedavg import FedAvgRecipe
    from nvflare.recipe.utils import set_per_site_config

    from ..weights import save_weights
    from .network import BundleNetwork

    check_trainable(bundle, clients, rounds)
    bundle_ref = bundle_ref or str(bundle.root)
    configs, overrides = list(configs), dict(overrides or {})
    settings = {"bundle": bundle_ref, "configs": configs, "overrides": overrides}
    settings.update(local_epochs=local_epochs, seed=seed, threads=threads)
    Path(client.SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    shutil.copyfile(client.__file__, CLIENT_SCRIPT)
    torch.manual_seed(seed)
    save_weights(BundleNetwork(bundle_ref, configs, overrides).state_dict(), INITIAL_MODEL_FILE)
    network = {"path": f"{BundleNetwork.__module__}.BundleNetwork", "args": {"bundle": bundle_ref, "configs": configs}}
    network["args"]["overrides"] = overrides
    recipe = FedAvgRecipe(
        name=f"{bundle.name}_fedavg",
        model=network,
        initial_ckpt=INITIAL_MODEL_FILE,  # a relative path: FLARE ships the file in the server's custom/ folder
        min_clients=clients,
        num_rounds=rounds,
        train_script=CLIENT_SCRIPT,
        launch_external_process=True,
        command=command,
    )
    if site_args:
        set_per_site_config(recipe, {site: {"train_args": args} for site, args in site_args.items()})
    recipe.add_client_file(client.SETTINGS_FILE)
    return recipe


@contextmanager
def staged(folder: Path) -> Iterator[Path]:
    """Create ``folder`` and work in it (FLARE resolves the job's files relative to the working directory)."""
    folder.mkdir(parents=True, exist_ok=True)
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(previous)


def write_site_data(
    bundle: Bundle, sites: list[str], data_dir: Path, seed: int = 0, configs: tuple[str, ...] = (), **sample: Any
) -> dict[str, Path]:
    """One phantom data set per site, and a held-out one: the bundle's ``sample_data.json`` (with ``configs`` merged on
    it, e.g. ``quick.json``) into ``data_dir/<site>`` with seed ``seed + i`` for site ``i`` (``held_out``:
    ``seed + len(sites) + 1``), so sites share no patient. ``sample`` overrides config ids (e.g. ``num_patients``).
    Returns ``{site or "held_out": folder}``."""
    from ..workflows import run_configs

    folders = {}
    for i, site in enumerate([*sites, "held_out"], start=1):
        folders[site] = data_dir / site
        settings = {**sample, "dataset_dir": str(folders[site]), "seed": seed + i}
        run_configs(bundle, ["sample_data.json", *configs], **settings)
    return folders


def _check_completed(client_dirs: dict[str, Path], rounds: int, workspace: Path) -> None:
    """Raise ``RuntimeError`` unless every client trained ``rounds`` rounds and the server saved a global model (FLARE's
    simulator ends without an error status when a client fails)."""
    problems = []
    for site, folder in client_dirs.items():
        done = folder / client.ROUNDS_DONE
        trained = len(json.loads(done.read_text())) if done.is_file() else 0
        if trained != rounds:
            problems.append(f"{site} trained {trained} of {rounds} rounds")
    if not list(workspace.rglob(GLOBAL_MODEL_FILE)):
        problems.append(f"the server saved no {GLOBAL_MODEL_FILE}")
    if problems:
        raise RuntimeError(f"federated run failed ({'; '.join(problems)}): see the logs under {workspace}")


class FederatedRun(dict):
    """Where a :func:`run_federated` put things: ``model`` (the global ``model.pt``), ``initial_model``,
    ``workspace`` (FLARE's simulator workspace), ``sites`` (``{site: data folder}``), ``held_out`` (data folder),
    ``clients`` (``{site: client workdir}``), ``configs`` (the training configs)."""


def run_federated(
    bundle: Bundle,
    clients: int,
    rounds: int,
    workdir: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    configs: tuple[str, ...] = ("train.json",),
    local_epochs: int = 1,
    seed: int = 0,
    sample: dict[str, Any] | None = None,
    **overrides: Any,
) -> FederatedRun:
    """Train ``bundle`` federated: ``clients`` simulated sites, each on its own phantom data, ``rounds`` FedAvg rounds
    in FLARE's simulator (one process per site, all stopped when it returns), in ``workdir`` (a new temporary folder
    by default; refused if not empty). The global model after the last round is written to ``ckpt_dir/model.pt`` (default: the bundle's
    ``models/``), a state dict ``torch.load(..., weights_only=True)`` reads.

    ``configs`` after ``train.json`` are merged on ``sample_data.json`` too (e.g. ``quick.json``); ``sample``
    overrides the sample-data ids of every site's data (e.g. ``num_patients``); ``overrides`` the training config ids
    on every site.
    """
    from nvflare.recipe.sim_env import SimEnv

    from ..weights import load_weights, save_weights

    check_trainable(bundle, clients, rounds)
    if workdir is not None and Path(workdir).is_dir() and any(Path(workdir).iterdir()):
        raise UserFileExistsError(f"work folder {workdir} is not empty: remove it or pass another --workdir")
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"federate_{bundle.name}_")).resolve()
    ckpt_dir = Path(ckpt_dir or bundle.root / "models").resolve()
    sites = site_names(clients)
    extra_configs = tuple(c for c in configs if c != "train.json")
    data = write_site_data(bundle, sites, workdir / "data", seed=seed, configs=extra_configs, **(sample or {}))
    runs = {site: workdir / "clients" / site for site in sites}
    site_args = {
        site: f"--dataset_dir {shlex.quote(str(data[site]))} --workdir {shlex.quote(str(runs[site]))}" for site in sites
    }
    workspace = workdir / "flare"
    with staged(workdir / "job_files"):
        recipe = build_recipe(
            bundle,
            clients,
            rounds,
            site_args=site_args,
            configs=configs,
            overrides=overrides,
            local_epochs=local_epochs,
            seed=seed,
            command=f"{sys.executable} -u",
            threads=max(1, (os.cpu_count() or 1) // clients),
        )
        recipe.run(SimEnv(clients=sites, num_clients=clients, workspace_root=str(workspace)))
    _check_completed(runs, rounds, workspace)
    checkpoint = load_weights(next(workspace.rglob(GLOBAL_MODEL_FILE)))  # {"model": state dict, "meta_props", ...}
    model = save_weights(checkpoint["model"], ckpt_dir / "model.pt")
    return FederatedRun(
        model=model,
        initial_model=workdir / "job_files" / INITIAL_MODEL_FILE,
        workspace=workspace,
        sites={s: data[s] for s in sites},
        held_out=data["held_out"],
        clients=runs,
        configs=tuple(configs),
    )


def evaluate_held_out(bundle: Bundle, run: FederatedRun, **overrides: Any) -> dict[str, Path]:
    """The bundle's ``evaluate.json`` (merged on ``train.json``, then the run's other configs, with ``overrides``) on
    the test split of the run's held-out data, for the initial and the global weights; returns
    ``{"initial" | "global": metrics.json file}`` (the files are under ``<run workdir>/evaluation/``)."""
    from ..workflows import run_configs

    if "evaluate.json" not in bundle.configs:
        raise UserValueError(f"bundle {bundle.name} has no configs/evaluate.json: the global model cannot be evaluated")
    evaluation = Path(run["workspace"]).parent / "evaluation"
    initial_dir = evaluation / "initial_weights"
    initial_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run["initial_model"], initial_dir / "model.pt")
    reports = {}
    for name, ckpt_dir in (("initial", initial_dir), ("global", Path(run["model"]).parent)):
        output_dir = evaluation / name
        run_configs(
            bundle,
            ["train.json", "evaluate.json", *(c for c in run["configs"] if c != "train.json")],
            workflow_type="eval",
            **{
                **overrides,
                "dataset_dir": str(run["held_out"]),
                "ckpt_dir": str(ckpt_dir),
                "output_dir": str(output_dir),
            },
        )
        reports[name] = output_dir / "metrics.json"
    return reports


def export_job(
    bundle: Bundle,
    clients: int,
    rounds: int,
    job_dir: str | os.PathLike,
    configs: tuple[str, ...] = ("train.json",),
    local_epochs: int = 1,
    seed: int = 0,
    **overrides: Any,
) -> Path:
    """Write the FedAvg job for ``clients`` real sites under ``job_dir``; returns the job folder FLARE takes
    (``nvflare job submit -j <job_dir>/<bundle>_fedavg``).

    Each site names the bundle as ``bundle.name`` (medzoo installed there with this zoo's bundles) and its data folder
    with the environment variable ``MEDZOO_FL_DATASET_DIR``. Refuses an existing ``job_dir``.
    """
    job_dir = Path(job_dir)
    check_trainable(bundle, clients, rounds)
    if job_dir.exists():
        raise UserFileExistsError(f"job folder {job_dir} exists already: remove it or pass another --export_job")
    job_dir = job_dir.resolve()
    with tempfile.TemporaryDirectory() as staging, staged(Path(staging)):
        recipe = build_recipe(
            bundle,
            clients,
            rounds,
            configs=configs,
            overrides=overrides,
            local_epochs=local_epochs,
            seed=seed,
            bundle_ref=bundle.name,
        )
        recipe.export(str(job_dir))
    return job_dir / recipe.name
