"""Hyperparameter search (``medzoo tune``): Optuna trials of a bundle's own train.json, on tiny phantoms."""

import json
import os
import subprocess
import sys
import time

import optuna
import pytest
from monai.bundle import ConfigParser

from medzoo.cli import main
from medzoo.errors import USER_ERROR_STATUS, UserValueError
from medzoo.tune import load_space, tune
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

BUNDLE = "cxr14_densenet121_classification"
SPACE = {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune_data")
    run_configs(Bundle(BUNDLE), ["sample_data.json", "quick.json"], dataset_dir=str(folder))
    return folder


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPACE))
    return path


def test_shipped_example_space_fits_its_bundle():
    bundle = Bundle(BUNDLE)
    space = load_space(bundle.root / "docs" / "tune_space.json", bundle.parser("train.json"))
    assert "learning_rate" in space


@pytest.mark.parametrize(
    "space, message",
    [
        ("{not json", "is not valid JSON"),
        (json.dumps({"learning_rat": SPACE["learning_rate"]}), "has no id 'learning_rat'"),
        (json.dumps({"learning_rate": {"type": "uniform", "low": 0, "high": 1}}), '"type" one of'),
        (json.dumps({"learning_rate": {"type": "float", "low": 1e-2, "high": 1e-4}}), "low < high"),
        (json.dumps({"batch_size": {"type": "categorical", "choices": []}}), "non-empty list"),
    ],
)
def test_bad_space_file_is_one_line(space, message, tmp_path, capsys):
    check_one_line_error(tmp_path, capsys, space, message, "study.db")


def test_bad_storage_url_is_one_line(tmp_path, capsys):
    check_one_line_error(
        tmp_path, capsys, json.dumps(SPACE), "cannot open study", "study.db", storage="sqlite//study.db"
    )


def check_one_line_error(tmp_path, capsys, space, message, database, storage=None):
    path = tmp_path / "space.json"
    path.write_text(space)
    database = tmp_path / database
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "tune",
                BUNDLE,
                "--space",
                str(path),
                "--trials",
                "1",
                "--storage",
                storage or f"sqlite:///{database}",
                "--output_dir",
                str(tmp_path / "tune"),
            ]
        )
    assert exit_info.value.code == USER_ERROR_STATUS
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and (str(path) in err or storage in err)
    assert not database.exists() and not (tmp_path / "tune").exists()


OPEN_STUDY_TOGETHER = """
import os, sys
from medzoo.tune import open_study
storage, ready, go = sys.argv[1:]
open(ready, "w").close()
while not os.path.exists(go):
    pass
open_study(storage, "together")
"""


def test_workers_started_together_open_one_new_study(tmp_path):
    """Processes creating the same new SQLite study at the same moment all get it (their schema creation races)."""
    go = tmp_path / "go"
    workers = {}
    for pair in range(3):
        for worker in range(2):
            ready = tmp_path / f"ready_{pair}_{worker}"
            command = [
                sys.executable,
                "-c",
                OPEN_STUDY_TOGETHER,
                f"sqlite:///{tmp_path / f'study_{pair}.db'}",
                str(ready),
                str(go),
            ]
            workers[ready] = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not all(ready.exists() for ready in workers):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers.values())
        time.sleep(0.1)
    go.touch()
    for worker in workers.values():
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err[-2000:]
    for pair in range(3):
        assert [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path / f'study_{pair}.db'}")] == [
            "together"
        ]


@pytest.mark.slow
def test_pruned_trial_stops_after_the_epoch_its_metric_was_reported(sample_data, space_file, tmp_path):
    """A pruner that rejects every value (AUROC never exceeds 1) stops the trial at its first validation."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.raises(UserValueError, match="no trial of study 'pruned' completed"):
        tune(
            Bundle(BUNDLE),
            space_file,
            trials=1,
            storage=storage,
            study_name="pruned",
            output_dir=tmp_path / "tune",
            configs=["quick.json"],
            pruner=optuna.pruners.ThresholdPruner(upper=-1.0),
            dataset_dir=str(sample_data),
            max_epochs=3,
        )
    (trial,) = optuna.load_study(study_name="pruned", storage=storage).trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]
    assert 0.0 <= trial.intermediate_values[1] <= 1.0
    assert not (tmp_path / "tune" / "best.json").exists()


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(sample_data, space_file, tmp_path):
    """Two ``medzoo tune`` processes on one SQLite study: every trial runs once, the best is written as a config
    that merges on train.json."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = [
        sys.executable,
        "-m",
        "medzoo.cli",
        "tune",
        BUNDLE,
        "--space",
        str(space_file),
        "--trials",
        "2",
        "--storage",
        storage,
        "--study",
        "shared",
        "--output_dir",
        str(tmp_path / "tune"),
        "--configs",
        "['quick.json']",
        "--dataset_dir",
        str(sample_data),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=900)
        assert worker.returncode == 0, err[-3000:]
        assert "best trial's overrides written to" in out

    study = optuna.load_study(study_name="shared", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    rates = [t.params["learning_rate"] for t in study.trials]
    assert len(set(rates)) == 4 and all(1e-4 <= r <= 1e-2 for r in rates)
    for t in study.trials:
        assert (tmp_path / "tune" / f"trial_{t.number}" / "models" / "model.pt").is_file()
        assert 0.0 <= t.value <= 1.0

    best_file = tmp_path / "tune" / "best.json"
    assert json.loads(best_file.read_text()) == study.best_trial.params
    assert study.best_value == max(t.value for t in study.trials)
    merged = ConfigParser.load_config_files([str(Bundle(BUNDLE).config_path("train.json")), str(best_file)])
    assert merged["learning_rate"] == study.best_trial.params["learning_rate"]
