"""Experiment tracking: MONAI's ``--tracking mlflow`` on the zoo's ``train.json``, read back with MLflow's client."""

import json
import math
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient
from monai.bundle.utils import DEFAULT_MLFLOW_SETTINGS

from medzoo.paths import bundle_names
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

TRAINABLE = [n for n in bundle_names() if "train.json" in Bundle(n).configs]
BUNDLE = "cxr14_densenet121_classification"
KEY_METRIC = "val_mean_auroc"
HANDLER_ARGUMENT = {"trainer": "train_handlers", "validator": "val_handlers"}


@pytest.mark.parametrize("name", TRAINABLE)
def test_train_config_has_the_ids_monai_tracking_patches(name):
    """``--tracking mlflow`` appends MLflow handlers to the handler lists named in MONAI's default settings; they log
    only if those lists exist and are the ones the trainer and validator get."""
    parser = Bundle(name).parser("train.json")
    assert "output_dir" in parser
    for role, argument in HANDLER_ARGUMENT.items():
        ids = DEFAULT_MLFLOW_SETTINGS["handlers_id"][role]
        if role == "validator" and "validate" not in parser:
            continue  # a bundle without validation (self-supervised pretraining) has no key metric to log
        assert isinstance(parser[ids["handlers"]], list), f"{name}: {ids['handlers']} is not a list of handlers"
        engine = parser[ids["id"]]
        assert engine[argument] == "@" + ids["handlers"], f"{name}: {ids['id']} does not use {ids['handlers']}"


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tracking_data")
    run_configs(Bundle(BUNDLE), ["sample_data.json", "quick.json"], dataset_dir=str(folder))
    return folder


def only_run(client: MlflowClient, experiment: str):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0]


def check_logged(client: MlflowClient, run, iterations: int, epochs: int) -> None:
    """Parameters, the training loss at every iteration and the key metric at every epoch are in the run."""
    assert run.info.status == "FINISHED"
    assert run.data.params["max_epochs"] == str(epochs)
    assert int(run.data.params["epoch_length"]) * epochs == iterations
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == list(range(1, iterations + 1))
    assert all(math.isfinite(m.value) and m.value > 0 for m in losses)
    key = client.get_metric_history(run.info.run_id, KEY_METRIC)
    assert [m.step for m in key] == list(range(1, epochs + 1))
    assert all(0.0 <= m.value <= 1.0 for m in key)


@pytest.mark.slow
def test_tracked_training_logs_params_losses_and_key_metric(sample_data, tmp_path):
    """A copy of the bundle with its default folders (``output_dir`` is ``<bundle_root>/eval``), as a user runs it."""
    bundle_root = tmp_path / BUNDLE
    shutil.copytree(Bundle(BUNDLE).root / "configs", bundle_root / "configs")
    epochs = 2
    workflow = run_configs(
        Bundle(bundle_root),
        ["train.json", "quick.json"],
        workflow_type="train",
        tracking="mlflow",
        dataset_dir=str(sample_data),
        max_epochs=epochs,
    )
    trainer = workflow.parser.get_parsed_content("train#trainer")
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")

    client = MlflowClient(tracking_uri=f"sqlite:///{bundle_root / 'eval' / 'mlruns.db'}")
    run = only_run(client, "monai_experiment")
    check_logged(client, run, trainer.state.iteration, epochs)
    # the logged values are the engines' own
    assert run.data.metrics["train_loss"] == pytest.approx(float(trainer.state.output[0]["loss"]))
    assert run.data.metrics[KEY_METRIC] == pytest.approx(evaluator.state.metrics[KEY_METRIC])
    # every hyperparameter is in the executed config, logged as an artifact of the run
    (artifact,) = client.list_artifacts(run.info.run_id)
    executed = json.loads(Path(client.download_artifacts(run.info.run_id, artifact.path, str(tmp_path))).read_text())
    assert executed["learning_rate"] == workflow.parser["learning_rate"]
    assert executed["max_epochs"] == epochs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite backend store, stopped after the test."""
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer within 180 s"
            time.sleep(1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.mark.slow
def test_tracking_to_a_team_server(sample_data, mlflow_server, tmp_path):
    """The README's command with ``--tracking_uri`` logs to a running MLflow server, nothing to the local store."""
    configs = Bundle(BUNDLE).root / "configs"
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str([str(configs / "train.json"), str(configs / "quick.json")]),
        "--tracking",
        "mlflow",
        "--tracking_uri",
        mlflow_server,
        "--experiment_name",
        "cxr14",
        "--dataset_dir",
        str(sample_data),
        "--ckpt_dir",
        str(tmp_path / "models"),
        "--output_dir",
        str(tmp_path / "eval"),
    ]
    subprocess.run(command, check=True, cwd=tmp_path, stdout=subprocess.DEVNULL)

    client = MlflowClient(tracking_uri=mlflow_server)
    run = only_run(client, "cxr14")
    epochs = json.loads(Path(configs / "quick.json").read_text())["max_epochs"]
    check_logged(client, run, int(run.data.params["epoch_length"]) * epochs, epochs)
    assert not (tmp_path / "eval" / "mlruns.db").exists()
