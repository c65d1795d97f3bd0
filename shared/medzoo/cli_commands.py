"""The commands of ``medzoo`` (:mod:`medzoo.cli`): :class:`ZooCLI`, whose public methods python-fire runs.

Each command is thin: it takes its arguments, calls one library function (which tests call directly) and prints what
that returns. Library modules are imported inside each command, so ``medzoo`` starts without the third-party packages
of the commands not run. A user mistake is a :class:`medzoo.errors.UserError` raised by the library, which
:func:`medzoo.cli.main` turns into one ``error: ...`` line.
"""

from __future__ import annotations

import json

from .zoo import INDEX_FILE, Bundle

__all__ = ["ZooCLI"]


class ZooCLI:
    """Tools for the bundles of this zoo. Every bundle also runs directly with ``python -m monai.bundle run``."""

    def list(self) -> None:
        """Print one line per bundle: name, version, task."""
        from .zoo import bundle_table

        print(bundle_table())

    def info(self, bundle: str) -> None:
        """Print the index entry of a bundle (network, parameters, inputs/outputs, labels, configs, weights)."""
        from .zoo import bundle_info

        print(json.dumps(bundle_info(bundle), indent=2))

    def sample_data(self, bundle: str, dataset_dir: str | None = None, **overrides) -> str:
        """Generate the bundle's synthetic sample data (its ``configs/sample_data.json``) and return the folder."""
        from .workflows import write_sample_data

        folder = write_sample_data(bundle, dataset_dir, **overrides)
        print(f"sample data written to {folder}")
        return folder

    def init_weights(self, bundle: str, output: str | None = None, seed: int = 0, format: str = "pt") -> str:  # noqa: A002
        """Write deterministic initial weights (not trained!) to ``models/model.<format>`` or ``output``.

        Frozen sub-networks the bundle loads (``<name>_network_def`` + ``<name>_checkpoint``, e.g. the MI bundle's
        ``models/motion_model.pt``) get initial weights too.

        ``--format safetensors`` stores them as safetensors (``models/model.safetensors``); pass that file to a config
        as ``--ckpt_path``.
        """
        from .weights import write_bundle_init_weights

        written = write_bundle_init_weights(bundle, output, seed=seed, format=format)
        print(f"initial (untrained) weights written to {written.model}")
        for frozen in written.frozen:
            print(f"initial (untrained) weights of a frozen sub-network written to {frozen}")
        return str(written.model)

    def convert_weights(self, source: str, destination: str, key: str | None = None) -> str:
        """Convert weights between ``.pt`` and ``.safetensors`` (by ``destination``'s suffix), checked tensor by tensor."""
        from .weights import convert_weights

        path = convert_weights(source, destination, key=key)
        print(f"weights written to {path}")
        return str(path)

    def export(self, bundle: str, format: str = "onnx", weights: str | None = None, output: str | None = None) -> None:  # noqa: A002
        """Export the network to ``models/model.<format>`` (``ts`` or ``onnx``) with a parity check against eager."""
        from .export import export_bundle

        report = export_bundle(Bundle(bundle), format, weights, output)
        print(f"{report['model']}: max abs difference to eager {report['max_abs_diff']:.2e}")

    def compress(
        self,
        bundle: str,
        method: str,
        weights: str | None = None,
        amount: float = 0.5,
        calibration_count: int = 16,
        dataset_dir: str | None = None,
        measure: bool = True,
        batch_sizes: tuple[int, ...] = (1, 4, 8),
        runs: int = 5,
    ) -> None:
        """Compress a bundle (int8_dynamic, int8_static, prune_magnitude, prune_channels) and report ratios to FP32.

        The model file and its ``.json`` / ``.md`` report go to ``models/``; ``dataset_dir`` is the sample data used
        for calibration and for the task metric of each variant (default: the bundle's, generated if missing).
        """
        from .compress import compress_bundle, compression_summary

        report = compress_bundle(
            Bundle(bundle),
            method,
            weights,
            amount=amount,
            calibration_count=calibration_count,
            dataset_dir=dataset_dir,
            measure=measure,
            batch_sizes=tuple(batch_sizes),
            runs=runs,
        )
        print(compression_summary(report))

    def benchmark(
        self,
        bundle: str | None = None,
        runs: int = 5,
        int8: bool = True,
        train: bool = True,
        tune: bool = False,
        train_overrides: dict | None = None,
        sample_overrides: dict | None = None,
        batch_sizes: tuple[int, ...] = (1, 2, 4, 8),
        ratio_rounds: int = 3,
        tune_backend: str | None = None,
    ) -> None:
        """Measure one bundle (or all): forward and end-to-end inference per backend, a training epoch (``--tune``:
        end-to-end inference over ``batch_sizes``, data-loader workers and thread layouts (one run at a time on
        intra-op threads, or a single-threaded run per core), and for PyTorch one intra-op thread against the default,
        to choose the defaults; on the faster exact backend, or
        ``--tune_backend torch`` / ``onnx``); write ``docs/benchmark.json`` and
        ``docs/benchmark.md`` in the bundle, record the summary in ``zoo_index.json`` (``select`` reads it) and print
        the table. ``--train_overrides '{"pretrained_ckpt": None}'`` reaches the training measurement's config (e.g.
        to start a fine-tuning bundle from random weights), ``--sample_overrides '{"image_size": 1024}'`` the sample
        data's (e.g. full-size chest X-rays); ``--ratio_rounds`` end-to-end / bare-network rounds (alternated) whose
        median ratio is reported."""
        from .bench.bundles import benchmark_bundles

        benchmark_bundles(
            bundle,
            log=print,
            batch_sizes=tuple(batch_sizes),
            runs=runs,
            int8=int8,
            train=train,
            tune=tune,
            sample_overrides=sample_overrides,
            train_overrides=train_overrides,
            ratio_rounds=ratio_rounds,
            tune_backend=tune_backend,
        )

    def verify(self, bundle: str | None = None, workflows: bool = True) -> None:
        """Run the zoo verification on one bundle or all of them; exits non-zero on the first failure."""
        from .verify import verify_bundles

        verify_bundles(bundle, workflows=workflows, log=print)

    def review(self, bundle: str) -> None:
        """List every import, ``$`` expression and ``_target_`` reaching outside monai/torch/numpy/ignite/medzoo.

        ``bundle`` is a name or a folder (e.g. a bundle downloaded from elsewhere). Only reads the configs: run this
        before running or verifying a bundle you did not write.
        """
        from .config_review import print_config_review

        print_config_review(Bundle(bundle), log=print)

    def index(self, check: bool = False) -> None:
        """Rebuild ``zoo_index.json`` from the bundles; with ``--check``, fail if the file on disk is stale."""
        from .zoo import check_index, write_index

        print(f"{check_index()} is up to date" if check else f"wrote {write_index()}")

    def package(
        self, bundle: str, output_dir: str = "dist", index_file: str = str(INDEX_FILE), force: bool = False
    ) -> str:
        """Write the reproducible, self-contained zip of a bundle and record its sha256 in ``zoo_index.json``.

        A version packaged before with other content is refused; ``--force`` replaces its record (only for a version
        never published). Files left out (resume checkpoints, exports, undeclared weights) are listed.
        """
        from .package import package_bundle, package_summary

        result = package_bundle(bundle, output_dir, index_file=index_file, force=force)
        print(package_summary(result))
        return result["path"]

    def push(self, bundle: str, repo: str, private: bool | None = None, index_file: str = str(INDEX_FILE)) -> None:
        """Publish a bundle's version to the Hugging Face Hub repo ``org/name``: exactly its package, the model card and
        ``release.json`` (package sha256), tagged with the version and ``latest_version``.

        ``--private True`` / ``--private False`` makes the repository private / public; without it a new repository is
        private and an existing one keeps its visibility.
        """
        from .hub import push

        result = push(bundle, repo, private=private, index_file=index_file)
        print(
            f"pushed {bundle} v{result['version']} to {repo} (sha256 {result['sha256']}, commit {result['commit']}); "
            "tagged it and latest_version"
        )

    def download(
        self,
        bundle: str,
        repo: str,
        version: str | None = None,
        bundle_dir: str = "downloads",
        index_file: str = str(INDEX_FILE),
    ) -> str:
        """Fetch a bundle from the Hub repo ``org/name`` (``--version``, default the ``latest_version`` tag); kept only
        if it matches the sha256 in the release's ``release.json`` and, when it records that version, the index."""
        from .hub import download

        folder = download(bundle, repo, version=version, bundle_dir=bundle_dir, index_file=index_file)
        print(f"{bundle} v{Bundle(folder).metadata['version']} downloaded and checked: {folder}")
        return str(folder)

    def select(
        self,
        task: str | None = None,
        max_latency_ms: float | None = None,
        max_size_mb: float | None = None,
        modality: str | None = None,
        max_memory_mb: float | None = None,
    ) -> None:
        """Recommend bundles for a task within latency/size/memory budgets, from ``zoo_index.json``, with the
        reasons (memory: peak of inference on a whole input where measured, e.g. a CT volume)."""
        from .selection import format_report, select_bundles

        print(format_report(select_bundles(task, max_latency_ms, max_size_mb, modality, max_memory_mb=max_memory_mb)))

    def import_model(self, folder: str, name: str | None = None, output_dir: str | None = None) -> str:
        """Turn a PyTorch model folder (model.pth, config.json[, metadata.json]) into a verified bundle.

        Written to ``output_dir`` (whose name is the bundle's), or to ``bundles/<name>`` where ``name`` defaults to the
        model folder's name with ``_classification`` appended when missing (MONAI Label takes the task from the name).
        """
        from .import_model import import_model

        path = import_model(folder, output_dir, name=name)
        print(f"imported {folder} as bundle {path.name} at {path}")
        return str(path)

    def convert(
        self,
        source: str,
        checkpoint: str,
        output_dir: str,
        bundle: str = "cxr14_densenet121_classification",
        drop_op_threshs: bool = False,
        source_labels: list[str] | None = None,
    ) -> str:
        """Convert a public checkpoint (``chexnet`` or ``xrv``) into a copy of ``bundle`` at ``output_dir``.

        The new bundle reads images as the source does and, for torchxrayvision weights with operating points, applies
        their calibration; its card reports the parity with the source measured during the conversion.
        ``--drop_op_threshs True`` (xrv) leaves the calibration out: plain sigmoid probabilities. ``--source_labels``
        (xrv) lists ``model.targets`` of the weights when they are not the 18 default labels. A checkpoint that
        cannot be converted is one ``error:`` line on stderr and exit status 2; nothing is written.
        """
        from .cxr.bundle_convert import convert_to_bundle

        path = convert_to_bundle(
            source,
            checkpoint,
            Bundle(bundle).root,
            output_dir,
            drop_op_threshs=drop_op_threshs,
            source_labels=None if source_labels is None else list(source_labels),
        )
        print(f"converted bundle written to {path}")
        return str(path)

    def cmr_infer(
        self,
        input_cmr: str,
        input_mask: str,
        slice_index: int,
        output: str,
        motion_checkpoint: str,
        checkpoint: str,
        es_frame: int | None = None,
        threshold: float = 0.5,
        device: str | None = None,
    ) -> str:
        """Cardiac chain on one cine slice: frozen motion network -> MI segmentation -> NIfTI with the input's header.

        ``input_cmr`` is a cine slice (T, H, W), ``input_mask`` the case's myocardium mask (S, H, W) and
        ``slice_index`` its slice for this cine; see :mod:`medzoo.cmr.chain`.
        """
        from .cmr.chain import run_chain

        path = run_chain(
            input_cmr,
            input_mask,
            slice_index,
            output,
            motion_checkpoint,
            checkpoint,
            es_frame=es_frame,
            threshold=threshold,
            device=device,
        )
        print(f"MI mask written to {path}")
        return str(path)

    def monailabel(self):
        """MONAI Label serving bundles on 127.0.0.1: ``medzoo monailabel setup <bundle>... --env E --app A``, then
        ``medzoo monailabel start --env E --app A --studies S`` (see :mod:`medzoo.monailabel`)."""
        from .monailabel import MonaiLabelCommands

        return MonaiLabelCommands()

    def quickstart(self, bundle: str = "cxr14_densenet121_classification") -> None:
        """The main job: sample data, a short training (``configs/demo.json``), evaluation and inference.

        Prints the held-out metrics overall and per class, the number of held-out cases, the files the run wrote and
        the measured time of each step and of the whole run.
        """
        from .quickstart import run_quickstart

        run_quickstart(Bundle(bundle))

    def tune(
        self,
        bundle: str,
        space: str,
        trials: int,
        storage: str | None = None,
        study: str | None = None,
        output_dir: str | None = None,
        configs: tuple = (),
        **overrides,
    ) -> None:
        """Optuna search over train.json ids sampled from a JSON space file; best ids written as a mergeable config.

        ``--storage sqlite:///tune.db`` (any RDB URL) shares the study ``--study`` between processes and machines;
        ``--configs "['quick.json']"`` merges more configs on train.json; other ``--id value`` are fixed overrides.
        See :mod:`medzoo.tune`.
        """
        from .tune import tune

        result, best = tune(
            Bundle(bundle),
            space,
            trials,
            storage=storage,
            study_name=study,
            output_dir=output_dir,
            configs=configs,
            **overrides,
        )
        print(f"best of {len(result.trials)} trials: trial {result.best_trial.number}, {result.best_value:.4f}")
        print(
            f"best trial's overrides written to {best}; train with them: python -m monai.bundle run "
            f"--config_file \"['{Bundle(bundle).config_path('train.json')}','{best}']\""
        )

    def federate(
        self,
        bundle: str,
        clients: int,
        rounds: int,
        workdir: str | None = None,
        export_job: str | None = None,
        ckpt_dir: str | None = None,
        local_epochs: int = 1,
        configs: tuple = (),
        **overrides,
    ) -> None:
        """FedAvg training with NVIDIA FLARE: the bundle's train.json on each site, FLARE's simulator on phantom sites.

        Each of ``--clients`` simulated sites gets its own phantom data; after ``--rounds`` rounds of ``--local_epochs``
        epochs the global model is written to ``<ckpt_dir>/model.pt`` (default: the bundle's models/) and evaluated
        with evaluate.json on a held-out phantom set. ``--export_job DIR`` writes the FLARE job for real sites instead
        of running it. ``--configs "['quick.json']"`` merges more configs on train.json; other ``--id value`` set config
        ids of the sites' sample data and training. See :mod:`medzoo.federated.job`.
        """
        from .federated.job import evaluate_held_out, run_federated
        from .federated.job import export_job as write_job

        settings = {"configs": ("train.json", *configs), "local_epochs": local_epochs, **overrides}
        if export_job:
            print(f"FLARE job written to {write_job(Bundle(bundle), clients, rounds, export_job, **settings)}")
            return
        run = run_federated(Bundle(bundle), clients, rounds, workdir, ckpt_dir, sample=overrides, **settings)
        print(f"{clients} site(s), {rounds} round(s); FLARE workspace and logs: {run['workspace']}")
        print(f"global model written to {run['model']}")
        for name, report in evaluate_held_out(Bundle(bundle), run, **overrides).items():
            metrics = {k: v for k, v in json.loads(report.read_text()).items() if isinstance(v, (int, float))}
            print(f"held-out test split, {name} weights: {json.dumps(metrics)} ({report})")
