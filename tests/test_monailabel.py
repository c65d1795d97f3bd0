"""MONAI Label 0.8.5's ``monaibundle`` app serves every segmentation and classification bundle of the zoo.

Opt-in (``MEDZOO_MONAILABEL=1``), because installing monailabel does not fit CI's time: it needs a separate virtual
environment (monailabel forces numpy<2, the zoo's environment has numpy 2), and that install took 3 min 20 s on an
unloaded 2-core machine (ZOO_GUIDE), and on this shared 2-core machine under load (load average 13-17) 13 min wall
(2 min 45 s CPU) by hand and 17.5 min wall inside this test, which then passed in 19 min 15 s in all. A warm run with
``MEDZOO_MONAILABEL_VENV`` takes about a minute per bundle (server start ~30 s).
``MEDZOO_MONAILABEL_VENV=<folder>`` reuses (or creates once) that environment instead of a temporary one.

Per bundle: the package (with the vendored shared layer and deterministic initial weights) goes into a copy of the
app that ships in the monailabel wheel (``<venv>/monailabel/sample-apps/monaibundle``); the server runs with
``--conf models <bundle> --conf zoo_source local --conf sam2 false`` on 127.0.0.1; ``GET /info/`` must list the
bundle with its task type and label names; ``POST /infer/<bundle>?image=<id>`` must give what the bundle's own
``inference.json`` gives on the same image.
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

MONAILABEL_REQUIREMENTS = [
    "monailabel==0.8.5", "pydicom<3", "pynetdicom<3", "dicomweb-client[gcp]<0.60",
    f"torch=={torch.__version__.split('+')[0]}", f"torchvision=={torchvision.__version__.split('+')[0]}",
]
SERVER_START_TIMEOUT_S = 600
SERVED = [n for n in bundle_names() if monailabel_task(Bundle(n))]


def _python(environment: Path) -> Path:
    return environment / "bin" / "python"


@pytest.fixture(scope="module")
def monailabel_env(tmp_path_factory) -> Path:
    environment = Path(os.environ.get("MEDZOO_MONAILABEL_VENV") or tmp_path_factory.mktemp("monailabel") / "venv")
    probe = [str(_python(environment)), "-c", "import monailabel; assert monailabel.__version__ == '0.8.5'"]
    if _python(environment).exists() and subprocess.run(probe, check=False, capture_output=True).returncode == 0:
        return environment
    start = time.perf_counter()
    venv.EnvBuilder(with_pip=True).create(environment)
    subprocess.run([str(_python(environment)), "-m", "pip", "install", "-q", *MONAILABEL_REQUIREMENTS], check=True,
                   timeout=3600)
    print(f"monailabel environment installed in {time.perf_counter() - start:.0f} s (wall) at {environment}")
    subprocess.run(probe, check=True)
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


@pytest.mark.parametrize("name", SERVED)
def test_monaibundle_app_serves_the_bundle(name, monailabel_env, tmp_path):
    bundle = Bundle(name)
    task = monailabel_task(bundle)
    shipped_app = monailabel_env / "monailabel" / "sample-apps" / "monaibundle"
    assert shipped_app.is_dir(), f"the monailabel wheel no longer ships {shipped_app}"
    app = Path(shutil.copytree(shipped_app, tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__")))
    unpacked = safe_extract(write_package(bundle, tmp_path / "package.zip"), tmp_path / "unpacked") / name
    served = Path(shutil.move(unpacked, app / "model" / name))
    weights = write_init_weights(bundle, served / "models" / "model.pt")

    source = _test_image(bundle, tmp_path)
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(source, studies / source.name)
    image_id = source.name.split(".")[0]

    port = _free_port()
    log = tmp_path / "server.log"
    command = [str(_python(monailabel_env)), "-m", "monailabel.main", "start_server", "--app", str(app),
               "--studies", str(studies), "--conf", "models", name, "--conf", "zoo_source", "local",
               "--conf", "sam2", "false", "--host", "127.0.0.1", "--port", str(port)]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        info = _wait_for_info(url, server, log)
        model = info["models"][name]
        channel_def = next(iter(bundle.metadata["network_data_format"]["outputs"].values()))["channel_def"]
        expected_labels = {v.lower(): int(k) for k, v in channel_def.items() if v.lower() != "background"}
        assert model["type"] == task and model["labels"] == expected_labels

        output = "json" if task == "classification" else "image"
        response = requests.post(f"{url}/infer/{name}", params={"image": image_id, "output": output}, timeout=600)
        assert response.status_code == 200, f"{response.text[:2000]}\n{log.read_text()[-4000:]}"
        run_configs(bundle, ["inference.json"], input=str(source), ckpt_path=str(weights),
                    output_dir=str(tmp_path / "eval"), num_workers=0)
        if task == "classification":
            scores = {p["label"]: p["score"] for p in response.json()["prediction"]}
            with open(tmp_path / "eval" / "predictions.csv") as f:
                row = next(csv.DictReader(f))
            assert sorted(scores) == sorted(expected_labels)
            for label in channel_def.values():
                assert scores[label.lower()] == pytest.approx(float(row[label]), abs=1e-5), label
        else:
            from monai.transforms import LoadImage

            label_file = tmp_path / f"label{''.join(source.suffixes)}"
            label_file.write_bytes(response.content)
            label = np.asarray(LoadImage(image_only=True)(str(label_file)))
            assert label.size > 0 and set(np.unique(label).astype(int)) <= {int(k) for k in channel_def}
    finally:
        if server.poll() is None:  # the server and what it started share the session created for it
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
