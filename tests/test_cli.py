"""The medzoo command line: thin commands over library functions, and one way of reporting user mistakes.

The library functions behind the commands are tested directly here (or in the test file of their module); the
command line itself is run in-process through fire, and as a user runs it: the installed ``medzoo`` entry point in a
new process, from a folder outside the repository.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fire
import pytest
import torch

import medzoo
from medzoo.cli import main
from medzoo.cli_commands import ZooCLI
from medzoo.compress import compression_summary
from medzoo.errors import USER_ERROR_STATUS, UserError, UserFileNotFoundError, UserValueError
from medzoo.import_model import default_bundle_folder
from medzoo.package import package_summary
from medzoo.paths import BUNDLES_DIR, bundle_names
from medzoo.weights import write_bundle_init_weights
from medzoo.workflows import write_sample_data
from medzoo.zoo import bundle_info, bundle_table, check_index, selected_bundles, write_index

CXR = "cxr14_densenet121_classification"
#: the console script ``pip install -e .`` puts beside the interpreter: the command line exactly as a user runs it
MEDZOO = Path(sys.executable).with_name("medzoo")


def _run(capsys, *args):
    fire.Fire(ZooCLI, command=list(args), name="medzoo")
    return capsys.readouterr().out


def _medzoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``medzoo ARGS`` in a new process started in ``cwd``, with this checkout's shared layer first on the path."""
    assert MEDZOO.is_file(), f"{MEDZOO} missing: install the zoo with `pip install -e .` into this environment"
    shared = str(Path(medzoo.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [shared, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([str(MEDZOO), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_list_and_info(capsys):
    table = bundle_table()
    assert [line.split()[0] for line in table.splitlines()] == bundle_names()
    assert f"{CXR} " in table and table.splitlines()[0].index(" ") <= 40
    assert _run(capsys, "list") == table + "\n"
    info = bundle_info(CXR)
    assert info["parameters"] > 6_000_000 and info["labels"][-1] == "Hernia"
    assert json.loads(_run(capsys, "info", CXR)) == info


def test_selected_bundles():
    assert [b.name for b in selected_bundles()] == bundle_names()
    assert [b.root for b in selected_bundles(CXR)] == [(BUNDLES_DIR / CXR).resolve()]
    assert [b.name for b in selected_bundles(BUNDLES_DIR / CXR)] == [CXR]


def test_unknown_bundle_is_a_user_error():
    with pytest.raises(UserFileNotFoundError, match="no bundle 'nope'.*known bundles: .*" + CXR):
        bundle_info("nope")
    with pytest.raises(UserFileNotFoundError, match="no bundle 'nope'"):
        selected_bundles("nope")


def test_index_check(capsys):
    assert "is up to date" in _run(capsys, "index", "--check")


def test_a_stale_or_missing_index_is_a_user_error(tmp_path):
    """``check_index`` on a one-bundle zoo: current, then stale after an edit, then missing."""
    bundles = tmp_path / "bundles"
    shutil.copytree(BUNDLES_DIR / CXR / "configs", bundles / CXR / "configs")
    index = write_index(tmp_path / "zoo_index.json", bundles)
    assert check_index(index, bundles) == index
    data = json.loads(index.read_text())
    data["bundles"][0]["version"] = "0.0.0"
    index.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"zoo_index.json is stale: run `medzoo index`"):
        check_index(index, bundles)
    index.unlink()
    with pytest.raises(UserError, match=r"zoo_index.json is missing: run `medzoo index`"):
        check_index(index, bundles)


def test_sample_data_and_init_weights(capsys, tmp_path):
    out = _run(
        capsys,
        "sample-data",
        CXR,
        f"--dataset_dir={tmp_path / 'data'}",
        "--num_patients=3",
        "--images_per_patient=2",
        "--image_size=64",
    )
    assert "sample data written to" in out
    datalist = json.loads((tmp_path / "data" / "datalist.json").read_text())
    assert len(datalist["training"]) + len(datalist["validation"]) + len(datalist["test"]) == 6
    assert write_sample_data(CXR, str(tmp_path / "more"), num_patients=3, images_per_patient=1, image_size=32) == str(
        tmp_path / "more"
    )
    assert (tmp_path / "more" / "datalist.json").is_file()
    _run(capsys, "init-weights", CXR, f"--output={tmp_path / 'w.pt'}")
    written = write_bundle_init_weights(CXR, tmp_path / "w2.pt")
    assert written.model == tmp_path / "w2.pt" and written.frozen == []
    first, second = (torch.load(tmp_path / n, weights_only=True) for n in ("w.pt", "w2.pt"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)  # deterministic


def test_init_weights_refuses_an_unknown_format_before_writing(tmp_path):
    with pytest.raises(UserValueError, match="unknown weights format 'npz'; choose one of .*'safetensors'"):
        write_bundle_init_weights(CXR, tmp_path / "w.npz", format="npz")
    assert list(tmp_path.iterdir()) == []


def test_import_model_default_folder():
    assert default_bundle_folder("uploads/chest_net") == BUNDLES_DIR / "chest_net_classification"
    assert default_bundle_folder("uploads/x", name="lung_classification") == BUNDLES_DIR / "lung_classification"


def test_summaries():
    packaged = {"path": "dist/b_v1.zip", "sha256": "ab" * 32, "bytes": 10, "weights": [], "left_out": []}
    assert package_summary(packaged) == f"dist/b_v1.zip  sha256 {'ab' * 32}  (10 bytes, weights: none)"
    lines = package_summary({**packaged, "weights": ["models/model.pt"], "left_out": ["models/a.ts"]}).splitlines()
    assert lines[0].endswith("weights: ['models/model.pt'])")
    assert lines[1] == "left out (not needed for inference or fine-tuning): models/a.ts"
    assert compression_summary({"output": "models/m.onnx", "size_ratio": 0.25}).splitlines() == [
        "models/m.onnx: 0.25x the FP32 size",
        "report: models/m.onnx.json",
    ]


def test_help_lists_every_command_with_one_line(capsys, tmp_path):
    commands = sorted(
        n.replace("_", "-") for n in vars(ZooCLI) if not n.startswith("_") and callable(getattr(ZooCLI, n))
    )
    shown = _medzoo("--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    listed = [line.split()[0] for line in lines[lines.index("commands:") + 1 :] if line.startswith("  ")]
    assert listed == commands
    review = next(line for line in lines if line.startswith("  review "))
    assert "List every import" in review
    assert all(len(line) <= 130 for line in lines)
    for same in (["-h"], []):
        main(same)
        assert capsys.readouterr().out == shown.stdout
    command_help = _medzoo("review", "--help", cwd=tmp_path)  # a command's own help is still fire's (on stderr)
    assert command_help.returncode == 0 and "medzoo review BUNDLE" in command_help.stdout + command_help.stderr


#: one command per family of user mistake: arguments (``{tmp}``: the test's folder), then texts its line must hold
MISTAKES = {
    "missing bundle": (["info", "nope"], ["no bundle 'nope' (known bundles: ", CXR, "name one of them"]),
    "missing file": (
        ["convert", "chexnet", "{tmp}/missing.pth.tar", "--output_dir", "{tmp}/out"],
        ["weights file not found: ", "missing.pth.tar", "check the path"],
    ),
    "bad argument": (
        ["init-weights", CXR, "--format", "npz", "--output", "{tmp}/out"],
        ["unknown weights format 'npz'", "--format"],
    ),
    "existing output": (
        ["convert", "chexnet", "{tmp}/missing.pth.tar", "--output_dir", "{tmp}"],
        ["already exists; choose a new folder"],
    ),
    # command lines that do not fit the command: refused before anything runs (fire would run quickstart first)
    "unknown flag": (
        ["quickstart", "--no_such_flag"],
        ["medzoo quickstart: unknown argument --no_such_flag", "usage: medzoo quickstart [--bundle BUNDLE]"],
    ),
    "missing positional": (["info"], ["medzoo info: missing BUNDLE", "usage: medzoo info BUNDLE"]),
    "bad value type": (
        ["init-weights", CXR, "--seed", "abc", "--output", "{tmp}/out.pt"],
        ["--seed expects an integer, got 'abc'", "usage: medzoo init-weights BUNDLE [--output OUTPUT]"],
    ),
    "extra positional": (["info", CXR, "extra"], ["medzoo info: unexpected argument 'extra'"]),
    "unknown command": (["infos"], ["medzoo: unknown command 'infos'", "init-weights", "`medzoo --help`"]),
    "unknown subcommand flag": (
        ["monailabel", "setup", CXR, "--envs", "{tmp}/env"],
        ["medzoo monailabel setup: unknown argument --envs", "[--env ENV]"],
    ),
}

#: command lines that fit their command, in fire's forms (flag=value, -x, --noflag, negative numbers, groups)
FITTING = [
    ["list"],
    ["info", CXR],
    ["init-weights", CXR, "--seed=-1", "-f", "safetensors", "--output", "x.pt"],
    ["init-weights", CXR, "x.pt", "3"],
    ["verify", "--noworkflows"],
    ["verify", CXR, "--workflows", "False"],
    ["sample-data", CXR, "--num_patients", "3", "--image-size", "64"],
    ["tune", CXR, "space.json", "2", "--configs", "['quick.json']", "--max_epochs", "1"],
    ["monailabel", "setup", CXR, CXR, "--env", "e", "--app", "a"],
    ["push", CXR, "--repo", "org/name", "--private"],
    ["quickstart", "--no_such_flag", "--help"],
]


@pytest.mark.parametrize("argv", FITTING, ids=" ".join)
def test_command_lines_that_fit_pass_the_check(argv):
    from medzoo.cli_checks import check_command_line

    check_command_line(ZooCLI(), argv)


def test_a_command_help_is_still_fires(tmp_path):
    for argv, synopsis in ((["quickstart", "--help"], "medzoo quickstart"), (["monailabel", "setup", "-h"], "BUNDLES")):
        shown = _medzoo(*argv, cwd=tmp_path)
        assert shown.returncode == 0 and synopsis in shown.stdout + shown.stderr, shown.stderr
        assert "error:" not in shown.stderr


@pytest.mark.parametrize("family", MISTAKES)
def test_a_user_mistake_is_one_line_without_traceback(family, tmp_path):
    """The installed ``medzoo``, run from a folder outside the repository: exit status 2, one ``error:`` line on
    stderr holding what is wrong and the next step, nothing on stdout, nothing written."""
    args, expected = MISTAKES[family]
    result = _medzoo(*(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    assert result.returncode == USER_ERROR_STATUS, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only a UserError becomes one line: any other exception of a command reaches the caller unchanged."""

    def broken() -> str:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("medzoo.zoo.bundle_table", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        main(["list"])
