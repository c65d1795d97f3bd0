"""Federated training with NVIDIA FLARE: ``medzoo federate`` in FLARE's real simulator on phantom sites.

The slow test runs the README's command (sites' phantom data, FedAvg rounds, evaluation on a held-out phantom set) in
a temporary folder and checks that the global model learned, that each site read only its own data (the files each
client process opened, recorded by an audit hook in the client script), and that no process of the run is left.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from medzoo.cli import main
from medzoo.federated import client
from medzoo.federated.job import INITIAL_MODEL_FILE, export_job
from medzoo.paths import REPO_ROOT
from medzoo.weights import load_weights
from medzoo.zoo import Bundle

pytest.importorskip("nvflare")

BUNDLE = "cxr14_densenet121_classification"
#: Per bundle run by the README: the held-out metric of evaluate.json, the margin by which the global model must beat
#: the initial weights on it, and the fewest held-out test cases.
EXPECTED = {
    "cxr14_densenet121_classification": ("mean_auroc", 0.15, 20),
    "ct_resnet3d_classification": ("auroc", 0.3, 9),
}


def _readme_commands() -> dict[str, list[str]]:
    """The ``medzoo federate ... --workdir`` commands of the README's "Federated training" section, as arguments, by
    bundle."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Federated training", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(medzoo federate [^`]*?--workdir[^`]*?)```", section)
    commands = [shlex.split(block.replace("\\\n", " ")) for block in blocks]
    return {command[2]: command for command in commands}


def test_the_readme_runs_one_bundle_of_each_family():
    assert sorted(_readme_commands()) == sorted(EXPECTED)


def _user_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert "no bundle 'nonexistent'" in _user_error(
        ["federate", "nonexistent", "--clients", "2", "--rounds", "1", "--workdir", str(workdir)], capsys
    )
    assert "at least 1 client" in _user_error(
        ["federate", BUNDLE, "--clients", "0", "--rounds", "1", "--workdir", str(workdir)], capsys
    )
    untrainable = tmp_path / "untrainable"
    (untrainable / "configs").mkdir(parents=True)
    for name in ("metadata.json", "inference.json"):
        shutil.copy(Bundle(BUNDLE).config_path(name), untrainable / "configs" / name)
    message = _user_error(
        ["federate", str(untrainable), "--clients", "2", "--rounds", "1", "--workdir", str(workdir)], capsys
    )
    assert "has no configs/train.json" in message and str(untrainable / "configs") in message
    assert not workdir.exists()
    (workdir / "data").mkdir(parents=True)  # a previous run's folder: its records must not pass for this run's
    assert "is not empty" in _user_error(
        ["federate", BUNDLE, "--clients", "2", "--rounds", "1", "--workdir", str(workdir)], capsys
    )
    assert [p.name for p in workdir.iterdir()] == ["data"]


def test_exported_job_ships_the_client_settings_and_initial_weights(tmp_path):
    job = export_job(Bundle(BUNDLE), 3, 4, tmp_path / "job", local_epochs=2, learning_rate=0.001)
    assert job == tmp_path / "job" / f"{BUNDLE}_fedavg"
    meta = json.loads((job / "meta.json").read_text())
    assert meta["min_clients"] == 3
    server = json.loads((job / "app" / "config" / "config_fed_server.json").read_text())
    assert '"num_rounds": 4' in json.dumps(server)
    executor = json.loads((job / "app" / "config" / "config_fed_client.json").read_text())["executors"][0]["executor"]
    assert executor["args"]["command"] == ["python3", "-u", "custom/medzoo_client.py"]  # no local paths: sites differ
    custom = job / "app" / "custom"
    assert (custom / "medzoo_client.py").read_bytes() == Path(client.__file__).read_bytes()
    settings = json.loads((custom / client.SETTINGS_FILE).read_text())
    assert settings["bundle"] == BUNDLE and settings["local_epochs"] == 2
    assert settings["overrides"] == {"learning_rate": 0.001}
    weights = load_weights(custom / INITIAL_MODEL_FILE)
    assert weights.keys() == Bundle(BUNDLE).network("train.json").state_dict().keys()
    with pytest.raises(FileExistsError, match="exists already"):
        export_job(Bundle(BUNDLE), 3, 4, tmp_path / "job")


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if text in command:
            found.append(f"{process.info['pid']}: {command[:200]}")
    return found


def _images(datalist: Path, splits: tuple[str, ...]) -> set[str]:
    entries = json.loads(datalist.read_text())
    return {str((datalist.parent / e["image"]).resolve()) for split in splits for e in entries[split]}


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_federated_training_learns_and_keeps_each_site_on_its_own_data(name, tmp_path):
    """The README's command, run in a temporary folder: 2 sites, 3 FedAvg rounds."""
    command = _readme_commands()[name]
    metric, margin, held_out_cases = EXPECTED[name]
    clients, rounds = int(_option(command, "--clients")), int(_option(command, "--rounds"))
    model_file = Bundle(name).root / "models" / "model.pt"
    before = model_file.stat().st_mtime_ns if model_file.exists() else None
    result = subprocess.run(
        [sys.executable, "-m", "medzoo.cli", *command[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / _option(command, "--workdir")

    # the global model: the bundle's weights file, read without pickled code, better than the initial weights
    initial = load_weights(run / "job_files" / INITIAL_MODEL_FILE)
    global_weights = load_weights(tmp_path / _option(command, "--ckpt_dir") / "model.pt")
    assert global_weights.keys() == initial.keys()
    assert any(not torch.equal(global_weights[k], initial[k]) for k in initial)
    scores = {}
    for weights in ("initial", "global"):
        metrics = json.loads((run / "evaluation" / weights / "metrics.json").read_text())
        assert metrics["num_samples"] >= held_out_cases
        scores[weights] = metrics[metric]
    assert scores["global"] >= scores["initial"] + margin, scores
    (printed,) = [line for line in result.stdout.splitlines() if line.startswith("held-out test split, global")]
    assert json.loads(printed.split("weights: ", 1)[1].rsplit(" (", 1)[0])[metric] == scores["global"]

    # each site: every round trained, its own training and validation images read, nothing of another site's data
    sites = sorted(p.name for p in (run / "data").iterdir() if p.name != "held_out")
    assert sites == [f"site-{i}" for i in range(1, clients + 1)]
    for site in sites:
        assert len(json.loads((run / "clients" / site / client.ROUNDS_DONE).read_text())) == rounds
        opened = set(json.loads((run / "clients" / site / client.FILES_OPENED).read_text()))
        own = (run / "data" / site).resolve()
        data_files = {f for f in opened if f.startswith(str((run / "data").resolve()) + os.sep)}
        foreign = sorted(f for f in data_files if not f.startswith(str(own) + os.sep))
        assert not foreign, f"{site} opened other sites' files: {foreign[:5]}"
        wanted = _images(own / "datalist.json", ("training", "validation"))
        assert wanted and wanted <= data_files, f"{site} did not read its images: {sorted(wanted - data_files)[:5]}"

    # nothing left running, nothing written outside the temporary folder
    deadline = time.monotonic() + 30
    while _processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _processes_mentioning(str(tmp_path))
    assert (model_file.stat().st_mtime_ns if model_file.exists() else None) == before
