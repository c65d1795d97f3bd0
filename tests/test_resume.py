"""Interrupted training: a run killed with SIGKILL mid-epoch resumes from its last atomic checkpoint.

Parametrised over every bundle with a ``train.json``; the ids used are the README's "Bundle conventions for
hardening" (``resume``, ``checkpoint_file``, ``train#checkpoint``, ``train#trainer``, ``validate#evaluator``).
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow

import medzoo
from medzoo.handlers import TrainingCheckpoint
from medzoo.paths import bundle_names
from medzoo.weights import load_state_dict, load_weights
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

TRAINABLE = [n for n in bundle_names() if (Bundle(n).root / "configs" / "train.json").is_file()]
#: The SIGKILL test takes minutes per bundle: by default it runs on the first bundle of each family (the name's first
#: word: cmr, ct, cxr14, ...), so every family's trainer and configs are covered and a new family joins by itself;
#: MEDZOO_ALL_BUNDLES=1 runs it on every trainable bundle. The conventions it relies on are checked for every bundle
#: by tests/test_determinism.py::test_hardening_conventions.
KILLED = (
    TRAINABLE
    if os.environ.get("MEDZOO_ALL_BUNDLES") == "1"
    else [n for i, n in enumerate(TRAINABLE) if n.split("_")[0] not in {m.split("_")[0] for m in TRAINABLE[:i]}]
)
MAX_EPOCHS = 3


def _configs(bundle: Bundle) -> list[str]:
    return ["train.json"] + (["quick.json"] if "quick.json" in bundle.configs else [])


def _command(bundle: Bundle, dirs: dict, **overrides) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str([str(bundle.config_path(c)) for c in _configs(bundle)]),
        "--meta_file",
        str(bundle.metadata_file),
        "--logging_file",
        str(bundle.config_path("logging.conf")),
        "--bundle_root",
        str(bundle.root),
        "--max_epochs",
        str(MAX_EPOCHS),
    ]
    for key, value in {**dirs, **overrides}.items():
        args += [f"--{key}", str(value)]
    return args


def _env() -> dict:
    shared = str(Path(medzoo.__file__).resolve().parents[1])
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([shared, os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _equal(a, b) -> bool:
    """Deep equality of state dicts (tensors compared exactly)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize("name", KILLED)
def test_sigkill_mid_epoch_then_resume(name, tmp_path):
    bundle = Bundle(name)
    dirs = {"dataset_dir": tmp_path / "data", "ckpt_dir": tmp_path / "models", "output_dir": tmp_path / "eval"}
    if "sample_data.json" in bundle.configs:
        run_configs(
            bundle,
            ["sample_data.json"] + (["quick.json"] if "quick.json" in bundle.configs else []),
            dataset_dir=str(dirs["dataset_dir"]),
        )
    checkpoint = Path(
        bundle.parser(*_configs(bundle), **{k: str(v) for k, v in dirs.items()}).get_parsed_content("checkpoint_file")
    )

    # 1. train, and SIGKILL the process in the epoch after the first checkpoint appeared
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen(_command(bundle, dirs), stdout=log, stderr=subprocess.STDOUT, env=_env())
        deadline = time.monotonic() + 600
        while not checkpoint.is_file():
            assert process.poll() is None, (
                f"training ended before a checkpoint:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.05)
        time.sleep(0.1)  # into the next epoch's iterations
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    saved = load_weights(checkpoint)  # complete and loadable although the process was killed
    saved_epoch = saved["trainer"]["iteration"] // saved["trainer"]["epoch_length"]
    assert 1 <= saved_epoch < MAX_EPOCHS, "the kill must interrupt training before its end"

    # 2. resuming restores network, optimizer, scheduler, trainer state and best metric exactly
    workflow = ConfigWorkflow(
        config_file=[str(bundle.config_path(c)) for c in _configs(bundle)],
        meta_file=str(bundle.metadata_file),
        logging_file=False,
        workflow_type="train",
        bundle_root=str(bundle.root),
        resume=True,
        max_epochs=MAX_EPOCHS,
        **{k: str(v) for k, v in dirs.items()},
    )
    workflow.initialize()
    handler = workflow.parser.get_parsed_content("train#checkpoint")
    trainer = workflow.parser.get_parsed_content("train#trainer")
    validates = "validate#evaluator" in workflow.parser
    evaluator = workflow.parser.get_parsed_content("validate#evaluator") if validates else None
    assert trainer.state.epoch == 0
    handler.restore(trainer)
    assert trainer.state.epoch == saved_epoch and trainer.state.max_epochs == MAX_EPOCHS
    assert trainer.state.iteration == saved["trainer"]["iteration"]
    expected = {"network", "optimizer"} | ({"lr_scheduler"} if "lr_scheduler" in workflow.parser else set())
    assert set(handler.save_dict) >= expected
    for key, obj in handler.save_dict.items():
        assert _equal(obj.state_dict(), saved[key]), f"{key} not restored"
    if validates:
        assert evaluator.state.best_metric == saved["best_metric"]
        assert evaluator.state.best_metric_epoch == saved["best_metric_epoch"]
    del workflow, handler, trainer, evaluator

    # 3. the resumed run continues from the saved epoch (not from 0) and finishes
    result = subprocess.run(
        _command(bundle, dirs, resume=True), capture_output=True, text=True, env=_env(), timeout=900, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(
        rf"resumed from .*checkpoint\S*: epoch {saved_epoch}, iteration {saved['trainer']['iteration']}", output
    )
    completed = [int(e) for e in re.findall(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete", output)]
    assert completed == list(range(saved_epoch + 1, MAX_EPOCHS + 1))
    final = load_weights(checkpoint)
    assert final["trainer"]["iteration"] == MAX_EPOCHS * saved["trainer"]["epoch_length"]
    # the model other configs use is still a plain state dict that fits the network
    network = bundle.parser(*_configs(bundle)).get_parsed_content("network_def")
    network.load_state_dict(load_state_dict(dirs["ckpt_dir"] / "model.pt"), strict=True)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    from ignite.engine import Engine

    handler = TrainingCheckpoint(tmp_path / "checkpoint.pt", {"network": torch.nn.Linear(2, 2)}, resume=True)
    with pytest.raises(FileNotFoundError, match="resume requested but there is no checkpoint at .*checkpoint.pt"):
        handler.attach(Engine(lambda engine, batch: None))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from ignite.engine import Engine

    network = torch.nn.Linear(2, 2)
    engine = Engine(lambda engine, batch: None)
    handler = TrainingCheckpoint(tmp_path / "checkpoint.pt", {"network": network})
    engine.run([0, 1], max_epochs=1)
    handler.save(engine)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def killed_while_writing(obj, path):
        Path(path).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(torch, "save", killed_while_writing)
    with torch.no_grad():
        network.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        handler.save(engine)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before  # the last complete checkpoint survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no partial file left beside it
    assert load_weights(tmp_path / "checkpoint.pt")["trainer"]["iteration"] == 2
