"""MONAI Label 0.8.5's ``monaibundle`` app serves every segmentation and classification bundle of the zoo.

Opt-in (``MEDZOO_MONAILABEL=1``): it needs a separate virtual environment (monailabel forces numpy<2, the zoo's
environment has numpy 2) holding monailabel and the packages the served bundles list, an install measured at 3 min
20 s on an unloaded 2-core machine (ZOO_GUIDE) and at 13 min wall on this shared one under load.
``MEDZOO_MONAILABEL_VENV=<folder>`` reuses (or creates once) that environment instead of a temporary one; with it
warm, the whole module ran in 77 s here (9 bundles).

One server serves them all (``--conf models a,b,... --conf zoo_source local --conf sam2 false`` on 127.0.0.1), from a
copy of the app that ships in the monailabel wheel (``<venv>/monailabel/sample-apps/monaibundle``) holding each
bundle's package (with its vendored shared layer and deterministic initial weights). Per bundle, ``GET /info/`` must
list it with its task type and label names, and ``POST /infer/<bundle>?image=<id>`` must give what the bundle's own
``inference.json`` gives on the same input: the same probabilities, or the same label volume with the same affine.
Bundles whose metadata declares ``monailabel_unsupported`` (the MI bundle needs more than one image) are left out.
"""

import csv
import os
import shutil
import signal
import socket
import subprocess
import time
import venv
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
import torchvision

from medzoo.package import safe_extract, write_package
from medzoo.paths import bundle_names
from medzoo.verify import monailabel_task, write_init_weights
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MEDZOO_MONAILABEL") != "1",
                       reason="opt-in (MEDZOO_MONAILABEL=1): installs monailabel 0.8.5 into its own environment"),
]

#: every segmentation and classification bundle, but those declaring (and documenting) why the app cannot feed them
SERVED = [n for n in bundle_names() if monailabel_task(Bundle(n)) and not Bundle(n).metadata.get("monailabel_unsupported")]
#: monailabel with what it needs offline, the zoo's torch build, and the packages the served bundles' metadata list
#: (by name: monailabel's own pins, e.g. pydicom<3, win over the versions the bundles were tested with)
MONAILABEL_REQUIREMENTS = [
    "monailabel==0.8.5", "pydicom<3", "pynetdicom<3", "dicomweb-client[gcp]<0.60",
    f"torch=={torch.__version__.split('+')[0]}", f"torchvision=={torchvision.__version__.split('+')[0]}",
    *sorted({p for n in SERVED for p in Bundle(n).metadata["required_packages_version"]} - {"medzoo", "pydicom"}),
]
SERVER_START_TIMEOUT_S = 600


def _python(environment: Path) -> Path:
    return environment / "bin" / "python"


@pytest.fixture(scope="module")
def monailabel_env(tmp_path_factory) -> Path:
    """The environment with :data:`MONAILABEL_REQUIREMENTS`: ``MEDZOO_MONAILABEL_VENV`` (created if missing, brought up
    to date otherwise) or a temporary one."""
    environment = Path(os.environ.get("MEDZOO_MONAILABEL_VENV") or tmp_path_factory.mktemp("monailabel") / "venv")
    start = time.perf_counter()
    if not _python(environment).exists():
        venv.EnvBuilder(with_pip=True).create(environment)
    subprocess.run([str(_python(environment)), "-m", "pip", "install", "-q", *MONAILABEL_REQUIREMENTS], check=True,
                   timeout=3600)
    print(f"monailabel environment ready in {time.perf_counter() - start:.0f} s (wall) at {environment}")
    subprocess.run([str(_python(environment)), "-c", "import monailabel; assert monailabel.__version__ == '0.8.5'"],
                   check=True)
    return environment


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


def _test_image(bundle: Bundle, workdir: Path) -> Path:
    """One input of the bundle's sample data, as its inference config lists it."""
    quick = ["quick.json"] if "quick.json" in bundle.configs else []
    run_configs(bundle, ["sample_data.json", *quick], dataset_dir=str(workdir / "data"))
    parser = bundle.parser("inference.json", dataset_dir=str(workdir / "data"))
    return Path(parser.get_parsed_content("dataset#data")[0]["image"])


@pytest.fixture(scope="module")
def server(monailabel_env, tmp_path_factory) -> dict:
    """One MONAI Label server whose ``monaibundle`` app serves every bundle of :data:`SERVED` (``--conf models
    a,b,...``), each unpacked from its package with initial weights, over a studies folder holding one sample input
    per bundle (named ``<bundle>_<file>``, so image ids are distinct)."""
    root = tmp_path_factory.mktemp("monailabel_app")
    shipped_app = monailabel_env / "monailabel" / "sample-apps" / "monaibundle"
    assert shipped_app.is_dir(), f"the monailabel wheel no longer ships {shipped_app}"
    app = Path(shutil.copytree(shipped_app, root / "app", ignore=shutil.ignore_patterns("__pycache__")))
    studies = root / "studies"
    studies.mkdir()
    served = {}
    for name in SERVED:
        bundle = Bundle(name)
        unpacked = safe_extract(write_package(bundle, root / f"{name}.zip"), root / "unpacked" / name) / name
        folder = Path(shutil.move(unpacked, app / "model" / name))
        source = _test_image(bundle, root / "inputs" / name)
        image = Path(shutil.copy(source, studies / f"{name}_{source.name}"))
        served[name] = {"weights": write_init_weights(bundle, folder / "models" / "model.pt"), "image": image,
                        "image_id": image.name.split(".")[0]}

    port = _free_port()
    log = root / "server.log"
    command = [str(_python(monailabel_env)), "-m", "monailabel.main", "start_server", "--app", str(app),
               "--studies", str(studies), "--conf", "models", ",".join(SERVED), "--conf", "zoo_source", "local",
               "--conf", "sam2", "false", "--host", "127.0.0.1", "--port", str(port)]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        yield {"url": url, "info": _wait_for_info(url, process, log), "log": log, "bundles": served}
    finally:
        if process.poll() is None:  # the server and what it started share the session created for it
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


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
    response = requests.post(f"{server['url']}/infer/{name}", params={"image": served["image_id"], "output": output},
                             timeout=600)
    assert response.status_code == 200, f"{response.text[:2000]}\n{server['log'].read_text()[-4000:]}"
    run_configs(bundle, ["inference.json"], input=str(served["image"]), ckpt_path=str(served["weights"]),
                output_dir=str(tmp_path / "eval"), num_workers=0)
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
