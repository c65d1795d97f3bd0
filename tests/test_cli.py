"""The medzoo command line, driven in-process through fire."""

import json
import os
import subprocess
import sys
from pathlib import Path

import fire
import pytest
import torch

import medzoo
from medzoo.cli import ZooCLI, main


def _run(capsys, *args):
    fire.Fire(ZooCLI, command=list(args), name="medzoo")
    return capsys.readouterr().out


def test_list_and_info(capsys):
    assert "cxr14_densenet121_classification" in _run(capsys, "list")
    info = json.loads(_run(capsys, "info", "cxr14_densenet121_classification").split("\n", 0)[0])
    assert info["parameters"] > 6_000_000 and info["labels"][-1] == "Hernia"


def test_unknown_bundle_is_a_clear_error(capsys):
    with pytest.raises(FileNotFoundError, match="no bundle 'nope'.*known bundles: .*cxr14_densenet121_classification"):
        _run(capsys, "info", "nope")


def test_index_check(capsys):
    assert "is up to date" in _run(capsys, "index", "--check")


def test_sample_data_and_init_weights(capsys, tmp_path):
    out = _run(capsys, "sample-data", "cxr14_densenet121_classification", f"--dataset_dir={tmp_path / 'data'}",
               "--num_patients=3", "--images_per_patient=2", "--image_size=64")
    assert "sample data written to" in out
    datalist = json.loads((tmp_path / "data" / "datalist.json").read_text())
    assert len(datalist["training"]) + len(datalist["validation"]) + len(datalist["test"]) == 6
    _run(capsys, "init-weights", "cxr14_densenet121_classification", f"--output={tmp_path / 'w.pt'}")
    _run(capsys, "init-weights", "cxr14_densenet121_classification", f"--output={tmp_path / 'w2.pt'}")
    first, second = (torch.load(tmp_path / n, weights_only=True) for n in ("w.pt", "w2.pt"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)  # deterministic


def _medzoo(*args: str) -> subprocess.CompletedProcess:
    """The command line as a user runs it: a new Python process, ``python -m medzoo.cli ARGS``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(medzoo.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "medzoo.cli", *args], capture_output=True, text=True, env=env, timeout=300)


def test_help_lists_every_command_with_one_line(capsys):
    commands = sorted(n.replace("_", "-") for n in vars(ZooCLI) if not n.startswith("_") and callable(getattr(ZooCLI, n)))
    shown = _medzoo("--help")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    listed = [line.split()[0] for line in lines[lines.index("commands:") + 1:] if line.startswith("  ")]
    assert listed == commands
    review = next(line for line in lines if line.startswith("  review "))
    assert "List every import" in review
    assert all(len(line) <= 130 for line in lines)
    for same in (["-h"], []):
        main(same)
        assert capsys.readouterr().out == shown.stdout
    command_help = _medzoo("review", "--help")  # a command's own help is still fire's (on stderr)
    assert command_help.returncode == 0 and "medzoo review BUNDLE" in command_help.stdout + command_help.stderr
