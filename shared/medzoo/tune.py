"""Hyperparameter search with Optuna over a bundle's own ``train.json``.

Each trial runs the bundle's ``train.json`` (plus any extra configs and fixed overrides) with config ids sampled from
a search space; the objective is the best value of the validator's key metric (``validate#evaluator``, the metric the
bundle's best-model checkpoint follows), and the validator's per-epoch value is reported to the trial so that Optuna's
pruner can stop a poor trial after any epoch. The best trial's sampled ids are written as a JSON config that merges on
``train.json``::

    python -m monai.bundle run --config_file "['configs/train.json','best.json']"

The search space is a JSON object mapping config ids (``#`` for nested ids) to distributions, with the arguments of
Optuna's ``suggest_float`` / ``suggest_int`` / ``suggest_categorical``::

    {
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true},
        "batch_size": {"type": "categorical", "choices": [4, 8, 16]},
        "train#augmentation#0#prob": {"type": "float", "low": 0.0, "high": 0.8, "step": 0.1}
    }

With an RDB storage URL (``sqlite:///tune.db``, ``postgresql://...``) several processes or machines load the same
study by name and share its trials (Optuna's own mechanism); without one the study lives in this process only.

Example::

    from medzoo.tune import tune
    from medzoo.zoo import Bundle

    study, best_file = tune(Bundle("cxr14_densenet121_classification"), "space.json", trials=20,
                            storage="sqlite:///tune.db")
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UserFileNotFoundError, UserValueError

if TYPE_CHECKING:
    from .zoo import Bundle

__all__ = ["DISTRIBUTIONS", "TrialReport", "load_space", "open_study", "sample", "tune", "write_best"]

#: Distribution type -> (required keys, optional keys) of its spec in a space file.
DISTRIBUTIONS = {
    "float": (("low", "high"), ("log", "step")),
    "int": (("low", "high"), ("log", "step")),
    "categorical": (("choices",), ()),
}

#: The validator (its key metric is the objective) and its handler list, MONAI's standard train config ids.
VALIDATOR_ID = "validate#evaluator"
VALIDATOR_HANDLERS_ID = "validate#handlers"


def load_space(space_file: str | os.PathLike, parser: Any) -> dict[str, dict]:
    """Read and check a search-space file against a bundle's merged train config (a MONAI ``ConfigParser``).

    Returns ``{config id: spec}``. Raises :class:`~medzoo.errors.UserValueError` (one line naming the file and the
    entry) for a space that is not a JSON object of known distributions over ids present in the config.
    """
    path = Path(space_file)
    if not path.is_file():
        raise UserFileNotFoundError(
            f"search space file {path} does not exist: write a JSON object of config id -> "
            "distribution (see medzoo.tune)"
        )
    try:
        space = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserValueError(f"search space file {path} is not valid JSON ({e}): fix it and run again") from None
    if not isinstance(space, dict) or not space:
        raise UserValueError(f"search space file {path} must be a non-empty JSON object of config id -> distribution")
    for config_id, spec in space.items():
        where = f"search space file {path}, entry '{config_id}'"
        if config_id not in parser:
            raise UserValueError(
                f"{where}: the bundle's train config has no id '{config_id}'; use an id of train.json "
                "('#' separates nested ids)"
            )
        if not isinstance(spec, dict) or spec.get("type") not in DISTRIBUTIONS:
            raise UserValueError(f'{where}: give an object with "type" one of {sorted(DISTRIBUTIONS)}')
        required, optional = DISTRIBUTIONS[spec["type"]]
        missing = [k for k in required if k not in spec]
        unknown = sorted(set(spec) - {"type", *required, *optional})
        if missing or unknown:
            raise UserValueError(
                f"{where}: a {spec['type']} distribution needs {list(required)} and may have "
                f"{list(optional)} (missing {missing}, unknown {unknown})"
            )
        if spec["type"] == "categorical":
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices or any(isinstance(c, (dict, list)) for c in choices):
                raise UserValueError(
                    f'{where}: "choices" must be a non-empty list of numbers, strings, booleans or null'
                )
        else:
            bounds = (spec["low"], spec["high"])
            if any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in bounds) or not bounds[0] < bounds[1]:
                raise UserValueError(f'{where}: "low" and "high" must be numbers with low < high')
            if spec.get("log") and bounds[0] <= 0:
                raise UserValueError(f'{where}: a log distribution needs "low" > 0')
    return space


def sample(trial: Any, space: dict[str, dict]) -> dict[str, Any]:
    """The trial's values for every id of ``space`` (Optuna ``suggest_*`` with the spec's arguments)."""
    values = {}
    for config_id, spec in space.items():
        args = {k: v for k, v in spec.items() if k != "type"}
        suggest = {"float": trial.suggest_float, "int": trial.suggest_int, "categorical": trial.suggest_categorical}
        values[config_id] = suggest[spec["type"]](config_id, **args)
    return values


class TrialReport:
    """Ignite handler for the validator: after each validation, report the key metric to an Optuna trial.

    The step is the trainer's epoch (MONAI's ``ValidationHandler`` runs the validator with the trainer's epoch as its
    own). When the trial's pruner says so, raises ``optuna.TrialPruned``, which stops the training.
    """

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        import optuna

        name, epoch = engine.state.key_metric_name, engine.state.epoch
        value = float(engine.state.metrics[name])
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with {name}={value}")


def _pruned_in_chain(error: BaseException) -> BaseException | None:
    """The ``optuna.TrialPruned`` in ``error``'s chain (MONAI wraps exceptions raised while running a config)."""
    import optuna

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, optuna.TrialPruned):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _direction(parser: Any) -> str:
    """``"maximize"`` or ``"minimize"``: the direction in which the validator's ``metric_cmp_fn`` calls a value better
    (MONAI's default: greater is better)."""
    cmp_id = f"{VALIDATOR_ID}#metric_cmp_fn"
    if cmp_id not in parser:
        return "maximize"
    better = parser.get_parsed_content(cmp_id)
    return "maximize" if better(1.0, 0.0) else "minimize"


def _run_trial(bundle: Bundle, config_files: list[str], overrides: dict[str, Any], trial: Any) -> float:
    """Train once with ``overrides``, reporting each validation to ``trial``; return the best key metric."""
    import optuna
    from monai.bundle import ConfigWorkflow

    logging_file = bundle.config_path("logging.conf")
    workflow = ConfigWorkflow(
        config_file=config_files,
        meta_file=str(bundle.metadata_file),
        logging_file=str(logging_file) if logging_file.is_file() else False,
        workflow_type="train",
        **overrides,
    )
    workflow.parser[VALIDATOR_HANDLERS_ID] = list(workflow.parser[VALIDATOR_HANDLERS_ID]) + [TrialReport(trial)]
    workflow.initialize()
    try:
        workflow.run()
    except Exception as error:
        pruned = _pruned_in_chain(error)
        if pruned is not None:
            raise optuna.TrialPruned(str(pruned)) from None
        raise
    finally:
        workflow.finalize()
    state = workflow.parser.get_parsed_content(VALIDATOR_ID).state
    if state.best_metric_epoch < 0 or not math.isfinite(state.best_metric):
        raise UserValueError(
            f"{bundle.name}: no validation ran in trial {trial.number} (val_interval > max_epochs?): "
            "set val_interval <= max_epochs"
        )
    return float(state.best_metric)


def open_study(storage: str | None, study_name: str, attempts: int = 5, **study_args: Any) -> Any:
    """Create the Optuna study ``study_name`` in ``storage`` (an RDB URL, or None for memory) or load it if it exists.

    Workers started together on a new database race to create its tables, and the losers fail (a table or the
    schema's version row already exists); such a failure is retried (``attempts`` times, 0.5 s apart), after which
    the tables exist and the study loads. ``study_args`` go to ``optuna.create_study`` (direction, pruner, sampler).
    """
    import optuna
    from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

    for attempt in range(1, attempts + 1):
        try:
            return optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True, **study_args)
        except (IntegrityError, OperationalError) as e:
            if attempt == attempts:
                raise UserValueError(f"cannot open study '{study_name}' in storage {storage}: {e}") from None
            time.sleep(0.5)
        except (ArgumentError, ImportError, ValueError, optuna.exceptions.OptunaError) as e:
            raise UserValueError(
                f"cannot open study '{study_name}' in storage {storage}: {e}; give an RDB URL such as sqlite:///tune.db"
            ) from None


def write_best(study: Any, path: str | os.PathLike) -> Path:
    """Write the best trial's sampled ids as a JSON config (``{id: value}``) that merges on ``train.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # workers of one study may write at the same time
    tmp.write_text(json.dumps(study.best_trial.params, indent=4) + "\n")
    tmp.replace(path)
    return path


def tune(
    bundle: Bundle,
    space_file: str | os.PathLike,
    trials: int,
    storage: str | None = None,
    study_name: str | None = None,
    output_dir: str | os.PathLike | None = None,
    configs: Sequence[str] = (),
    best_file: str | os.PathLike | None = None,
    pruner: Any = None,
    seed: int | None = None,
    **overrides: Any,
) -> tuple[Any, Path]:
    """Run ``trials`` trials of ``bundle``'s ``train.json`` (+ ``configs``, names under ``configs/`` or paths, merged
    in order, then ``overrides``) and write the best trial's sampled ids to ``best_file``; return the Optuna study and
    the path of that file.

    Each trial trains into ``<output_dir>/trial_<number>`` (its ``ckpt_dir`` and ``output_dir``); ``output_dir``
    defaults to ``<bundle>/tune/<study name>`` and ``best_file`` to ``<output_dir>/best.json``. The study (default
    name: the bundle's) is created or loaded from ``storage`` (an RDB URL; None keeps it in memory), with Optuna's
    ``MedianPruner`` unless ``pruner`` is given and a TPE sampler seeded with ``seed`` (None: not seeded, as several
    workers on one study need). The best trial is taken over the whole study, other workers' trials included.
    """
    import optuna

    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise UserValueError(f"--trials must be a whole number >= 1, not {trials!r}")
    config_files = [str(bundle.config_path("train.json"))]
    for name in [configs] if isinstance(configs, str) else configs:
        path = Path(name) if Path(name).is_file() else bundle.config_path(name)
        if not path.is_file():
            raise UserFileNotFoundError(
                f"config {name} not found (neither a file nor in {bundle.root / 'configs'}): "
                "pass a config name of the bundle or a path"
            )
        config_files.append(str(path))
    overrides.setdefault("bundle_root", str(bundle.root))
    parser = bundle.parser(*config_files, **overrides)
    if VALIDATOR_ID not in parser:
        raise UserValueError(
            f"{bundle.name} has no validator ({VALIDATOR_ID}) and so no validation metric to "
            "optimise: tune a bundle whose train.json validates"
        )
    space = load_space(space_file, parser)
    clashing = sorted(set(space) & set(overrides))
    if clashing:
        raise UserValueError(f"{clashing} are both fixed on the command line and searched in {space_file}: drop one")
    study_name = study_name or bundle.name
    output_dir = Path(output_dir) if output_dir is not None else bundle.root / "tune" / study_name
    study = open_study(
        storage,
        study_name,
        direction=_direction(parser),
        pruner=pruner or optuna.pruners.MedianPruner(),
        sampler=optuna.samplers.TPESampler(seed=seed),
    )

    def objective(trial: optuna.Trial) -> float:
        trial_dir = output_dir / f"trial_{trial.number}"
        dirs = {"ckpt_dir": str(trial_dir / "models"), "output_dir": str(trial_dir / "eval")}
        return _run_trial(bundle, config_files, {**overrides, **dirs, **sample(trial, space)}, trial)

    study.optimize(objective, n_trials=trials, catch=())
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise UserValueError(
            f"no trial of study '{study_name}' completed (all pruned): nothing written; run more "
            "trials or widen the search space"
        )
    return study, write_best(study, best_file if best_file is not None else output_dir / "best.json")
