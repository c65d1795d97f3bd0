"""MONAI Label 0.8.5 serves every segmentation and classification bundle of the zoo, set up and started by the very
commands the docs show (``medzoo monailabel setup`` / ``start``, :data:`medzoo.monailabel.SETUP_COMMAND` and
:data:`~medzoo.monailabel.START_COMMAND`).

Part of the default suite: the module fixture runs ``setup``, which installs monailabel and the bundles' packages
into a virtual environment of its own (monailabel forces numpy<2; measured at 3 min 20 s on an unloaded 2-core
machine, up to 13 min under load). A failed install fails the tests that need it. ``MEDZOO_MONAILABEL_VENV=<folder>``
reuses (or creates once) that environment instead of a temporary one; ``setup`` still brings it up to date.

One server serves them all, on 127.0.0.1 and a free port. Each bundle is served from its package with deterministic
initial weights in ``models/model.pt`` and a decoy ``models/checkpoint.pt`` of other weights beside it before
packaging. Per bundle, ``GET /info/`` must list it with its task type and label names, and ``POST /infer/<bundle>``
must give what the bundle's own ``inference.json`` gives on the same input with ``model.pt``: the same
probabilities, or the same label volume with the same affine. Bundles whose metadata declares
``monailabel_unsupported`` (the MI bundle needs more than one image) are left out, and ``setup`` refuses them.
"""

import csv
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from medzoo.errors import USER_ERROR_STATUS
from medzoo.monailabel import DOCUMENTED, SETUP_COMMAND, START_COMMAND, command, monailabel_task, requirements
from medzoo.package import EXCLUDED_DIRS
from medzoo.paths import REPO_ROOT, bundle_names
from medzoo.weights import write_init_weights
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

#: every segmentation and classification bundle, but those declaring (and documenting) why the app cannot feed them
UNSUPPORTED = [n for n in bundle_names() if Bundle(n).metadata.get("monailabel_unsupported")]
SERVED = [n for n in bundle_names() if monailabel_task(Bundle(n)) and n not in UNSUPPORTED]
SETUP_TIMEOUT_S = 3600
SERVER_START_TIMEOUT_S = 600
WEIGHT_SUFFIXES = (".pt", ".ts", ".onnx", ".safetensors")


def _argv(line: str) -> list[str]:
    """A documented ``medzoo ...`` command line as this interpreter runs it."""
    words = shlex.split(line)
    assert words[0] == "medzoo"
    return [sys.executable, "-m", "medzoo.cli", *words[1:]]


def _run(line: str, log: Path, timeout: float) -> subprocess.CompletedProcess:
    with open(log, "w") as out:
        return subprocess.run(
            _argv(line),
            check=False,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )


def test_requirements_hold_every_package_the_bundles_list():
    """The install line has monailabel's pins, the zoo's torch build and each package a served bundle lists (numba
    for the chest X-ray bundles: without it the server dies at start), minus the vendored medzoo."""
    import torch

    listed = requirements([Bundle(n) for n in SERVED])
    names = [r.split("==")[0].split("<")[0].split("[")[0] for r in listed]
    assert listed[:4] == ["monailabel==0.8.5", "pydicom<3", "pynetdicom<3", "dicomweb-client[gcp]<0.60"]
    assert f"torch=={torch.__version__.split('+')[0]}" in listed and "medzoo" not in names
    assert len(names) == len(set(names)) and "numba" in names and "timm" in names
    for name in SERVED:
        assert set(Bundle(name).metadata["required_packages_version"]) - {"medzoo"} <= set(names), name


def test_docs_show_the_commands_this_module_runs():
    """The README and every served bundle's card give ``setup`` and ``start`` exactly as the fixtures below run them
    (with the documented folder names); cards of unsupported bundles say why instead."""
    start = command(START_COMMAND, **DOCUMENTED)
    readme = (REPO_ROOT / "README.md").read_text()
    assert command(SETUP_COMMAND, bundles=["cxr14_densenet121_classification"], **DOCUMENTED) in readme
    assert start in readme and "127.0.0.1" in readme and "--host 0.0.0.0" in readme
    for name in SERVED:
        card = (Bundle(name).root / "docs" / "README.md").read_text()
        assert command(SETUP_COMMAND, bundles=[name], **DOCUMENTED) in card and start in card, name
    for name in UNSUPPORTED:
        assert "## MONAI Label\nNot supported" in (Bundle(name).root / "docs" / "README.md").read_text(), name


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_setup_refuses_a_bundle_the_app_cannot_serve(name, tmp_path):
    """One ``error:`` line naming the bundle and the reason, exit status 2 (a user mistake), and neither environment
    nor app folder created."""
    env, app = tmp_path / "env", tmp_path / "app"
    result = subprocess.run(
        _argv(command(SETUP_COMMAND, bundles=[name], env=env, app=app)),
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    reason = Bundle(name).metadata["monailabel_unsupported"]
    assert result.returncode == USER_ERROR_STATUS and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {name}: MONAI Label cannot serve it ({reason}); see the MONAI Label section of its docs/README.md"
    ]
    assert not env.exists() and not app.exists()


def _test_image(bundle: Bundle, workdir: Path) -> Path:
    """One input of the bundle's sample data, as its inference config lists it."""
    quick = ["quick.json"] if "quick.json" in bundle.configs else []
    run_configs(bundle, ["sample_data.json", *quick], dataset_dir=str(workdir / "data"))
    parser = bundle.parser("inference.json", dataset_dir=str(workdir / "data"))
    return Path(parser.get_parsed_content("dataset#data")[0]["image"])


def _weighted_copy(bundle: Bundle, destination: Path) -> Path:
    """The bundle's folder without weights, then initial weights in ``models/model.pt`` (seed 0) and a decoy
    ``models/checkpoint.pt`` (seed 1), so a server that used the checkpoint would answer differently."""
    ignored = shutil.ignore_patterns(*EXCLUDED_DIRS, *(f"*{s}" for s in WEIGHT_SUFFIXES))
    copy = Path(shutil.copytree(bundle.root, destination / bundle.name, ignore=ignored))
    write_init_weights(bundle, copy / "models" / "checkpoint.pt", seed=1)
    return write_init_weights(bundle, copy / "models" / "model.pt", seed=0)


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> dict:
    """``medzoo monailabel setup`` run on weighted copies of every bundle of :data:`SERVED`, and a studies folder
    holding one sample input per bundle (named ``<bundle>_<file>``, so image ids are distinct)."""
    root = tmp_path_factory.mktemp("monailabel")
    env = Path(os.environ.get("MEDZOO_MONAILABEL_VENV") or root / "env")
    studies = root / "studies"
    studies.mkdir()
    bundles = {}
    for name in SERVED:
        bundle = Bundle(name)
        weights = _weighted_copy(bundle, root / "bundles")
        source = _test_image(bundle, root / "inputs" / name)
        image = Path(shutil.copy(source, studies / f"{name}_{source.name}"))
        bundles[name] = {"weights": weights, "image": image, "image_id": image.name.split(".")[0]}

    log, start = root / "setup.log", time.perf_counter()
    line = command(SETUP_COMMAND, bundles=[root / "bundles" / n for n in SERVED], env=env, app=root / "app")
    result = _run(line, log, SETUP_TIMEOUT_S)
    if result.returncode != 0:
        pytest.fail(f"`{line}` failed (exit {result.returncode}):\n{log.read_text()[-6000:]}")
    print(f"medzoo monailabel setup: {time.perf_counter() - start:.0f} s (wall), environment {env}")
    return {"env": env, "app": root / "app", "studies": studies, "bundles": bundles}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_info(url: str, server: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"MONAI Label exited with {server.returncode}:\n{log.read_text()[-4000:]}")
        try:
            response = requests.get(f"{url}/info/", timeout=10)
            if response.status_code == 200:
                return response.json()
        except requests.ConnectionError:
            pass
        time.sleep(3)
    pytest.fail(f"MONAI Label did not answer within {SERVER_START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def server(app) -> dict:
    """``medzoo monailabel start`` on the app folder, on a free port, stopped (with all it started) at the end."""
    port = _free_port()
    log = app["app"].parent / "server.log"
    line = command(START_COMMAND, env=app["env"], app=app["app"], studies=app["studies"], port=port)
    with open(log, "w") as out:
        process = subprocess.Popen(
            _argv(line),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    try:
        url = f"http://127.0.0.1:{port}"
        yield {"url": url, "port": port, "info": _wait_for_info(url, process, log), "log": log, **app}
    finally:  # the server and what it started share the session created for it
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("name", SERVED)
def test_monaibundle_app_serves_the_bundle(name, server, tmp_path):
    """``/info/`` lists the bundle with its task and label names; ``/infer`` gives what the bundle's own
    ``inference.json`` gives on the same input: the same probabilities, or the same label volume and geometry."""
    bundle = Bundle(name)
    task = monailabel_task(bundle)
    served = server["bundles"][name]
    model = server["info"]["models"][name]
    channel_def = next(iter(bundle.metadata["network_data_format"]["outputs"].values()))["channel_def"]
    expected_labels = {v.lower(): int(k) for k, v in channel_def.items() if v.lower() != "background"}
    assert model["type"] == task and model["labels"] == expected_labels

    output = "json" if task == "classification" else "image"
    response = requests.post(
        f"{server['url']}/infer/{name}", params={"image": served["image_id"], "output": output}, timeout=600
    )
    assert response.status_code == 200, f"{response.text[:2000]}\n{server['log'].read_text()[-4000:]}"
    run_configs(
        bundle,
        ["inference.json"],
        input=str(served["image"]),
        ckpt_path=str(served["weights"]),
        output_dir=str(tmp_path / "eval"),
        num_workers=0,
    )
    if task == "classification":
        scores = {p["label"]: p["score"] for p in response.json()["prediction"]}
        with open(tmp_path / "eval" / "predictions.csv") as f:
            row = next(csv.DictReader(f))
        assert sorted(scores) == sorted(expected_labels)
        for label in channel_def.values():
            assert scores[label.lower()] == pytest.approx(float(row[label]), abs=1e-5), label
    else:
        import nibabel as nib

        label_file = tmp_path / f"label{''.join(served['image'].suffixes)}"
        label_file.write_bytes(response.content)
        (own_file,) = [p for p in (tmp_path / "eval").rglob("*") if p.is_file()]
        served_label, own_label = nib.load(label_file), nib.load(own_file)
        assert served_label.shape == own_label.shape
        assert np.array_equal(np.asarray(served_label.dataobj).astype(int), np.asarray(own_label.dataobj).astype(int))
        assert np.allclose(served_label.affine, own_label.affine, atol=1e-4)


@pytest.mark.slow
def test_the_only_model_file_served_is_model_pt(server):
    """The package leaves a training checkpoint out, so the app offers ``model.pt`` alone (MONAI Label lists every
    ``models/*.pt`` as a ``model_filename`` choice a request may pick)."""
    offered = {name: server["info"]["models"][name]["config"]["model_filename"] for name in SERVED}
    assert offered == {name: ["model.pt"] for name in SERVED}


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp{,6}) of the sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                found.add(local.split(":")[0])
    return found


@pytest.mark.slow
def test_server_listens_on_loopback_only_and_refuses_other_origins(server):
    """Bound to 127.0.0.1 alone; a request from a web page of another site (its ``Origin``), or naming another host
    (a domain made to resolve to 127.0.0.1), is refused, while clients sending neither are served."""
    assert _listening_addresses(server["port"]) == {"0100007F"}  # 127.0.0.1
    url = f"{server['url']}/info/"
    assert requests.get(url, timeout=30).status_code == 200
    assert requests.get(url, headers={"Origin": server["url"]}, timeout=30).status_code == 200
    foreign = requests.get(url, headers={"Origin": "https://example.org"}, timeout=30)
    assert foreign.status_code == 403 and "access-control-allow-origin" not in foreign.headers
    assert requests.get(url, headers={"Host": f"example.org:{server['port']}"}, timeout=30).status_code == 403
