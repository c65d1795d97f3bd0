"""Distributed evaluation and batch inference under torchrun (2 gloo processes on the CPU) against one process.

Each bundle with ``multi_gpu_evaluate.json`` evaluates and predicts an odd number of test cases (so a padded shard
would count one twice) with deterministic initial weights, once in one process and once under torchrun; the metrics
must agree to 1e-6 and the inference outputs must be the same files (:func:`medzoo.distributed.check_distributed`,
:func:`~medzoo.distributed.compare_files`).
"""

import json

import pytest
import torch
from bundle_sets import smallest_of_each_configuration

from medzoo.distributed import compare_files, compare_metrics, rank_handlers
from medzoo.handlers import LoadWeights, PredictionCSVWriter
from medzoo.paths import bundle_names
from medzoo.weights import save_weights, write_init_weights
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

DISTRIBUTED = sorted(n for n in bundle_names() if "multi_gpu_evaluate.json" in Bundle(n).configs)
#: Sample-data settings (on top of quick.json) giving at least 3 labelled test cases (the test split of the labelled
#: cases); the test keeps an odd number of them.
SAMPLE_SETTINGS = {"ct_resnet3d_classification": {"num_training": 30}, "msd_unet3d_segmentation": {"num_training": 30}}
#: Grad-CAM on for the chest X-ray bundles: overlays written by each rank, their index gathered (a high threshold
#: keeps the overlays few).
RUN_SETTINGS = {name: {"gradcam": True, "gradcam_threshold": 0.52} for name in DISTRIBUTED if name.startswith("cxr14_")}


def test_the_classifiers_and_the_3d_segmenter_have_distributed_configs():
    """Every chest X-ray classifier (HybridMedNet variants included), the 3D classifier and the 3D segmenter."""
    expected = {
        "cxr14_densenet121_classification",
        "cxr14_mobilenetv3_distilled_classification",
        "cxr14_remedis_resnet50x1_classification",
        "ct_resnet3d_classification",
        "msd_unet3d_segmentation",
        *(n for n in bundle_names() if n.startswith("cxr14_hybridmednet_")),
    }
    assert expected <= set(DISTRIBUTED)
    for name in DISTRIBUTED:
        assert "multi_gpu_inference.json" in Bundle(name).configs, name


def _odd_test_split(datalist_file):
    datalist = json.loads(datalist_file.read_text())
    count = len(datalist["test"]) - (len(datalist["test"]) % 2 == 0)
    assert count >= 3, f"{datalist_file}: too few test cases"
    datalist["test"] = datalist["test"][:count]
    datalist_file.write_text(json.dumps(datalist))
    return count


@pytest.mark.slow
@pytest.mark.parametrize("name", smallest_of_each_configuration(DISTRIBUTED))
def test_torchrun_matches_one_process(name, tmp_path):
    from medzoo.distributed import check_distributed

    bundle = Bundle(name)
    data, models = tmp_path / "data", tmp_path / "models"
    run_configs(bundle, ["sample_data.json", "quick.json"], dataset_dir=str(data), **SAMPLE_SETTINGS.get(name, {}))
    count = _odd_test_split(data / "datalist.json")
    torch.manual_seed(0)  # deterministic initial weights of the quick.json network
    save_weights(
        bundle.parser("inference.json", "quick.json").get_parsed_content("network_def").state_dict(),
        models / "model.pt",
    )
    folders = check_distributed(bundle, data, models, tmp_path / "runs", nproc=2, **RUN_SETTINGS.get(name, {}))

    metrics = json.loads((folders["multi_evaluate"] / "metrics.json").read_text())
    assert metrics["num_samples"] == count
    outputs = sorted(p.name for p in folders["multi_inference"].rglob("*") if p.is_file())
    if "predictions.csv" in outputs:
        rows = (folders["multi_inference"] / "predictions.csv").read_text().splitlines()[1:]
        assert len(rows) == len(set(rows)) == count  # every case once, none twice
    else:
        assert len([o for o in outputs if o.endswith("_seg.nii.gz")]) == count, outputs
    if name in RUN_SETTINGS:
        assert (folders["multi_inference"] / "gradcam" / "gradcam.csv").is_file()
    assert not [o for o in outputs if o.startswith(".")], f"partial files left: {outputs}"


def test_more_processes_than_inputs_is_one_line_error(tmp_path, cxr_bundle):
    import subprocess

    from medzoo.workflows import bundle_command

    image = tmp_path / "one.png"
    from PIL import Image

    Image.new("L", (64, 64), 128).save(image)
    write_init_weights(cxr_bundle, tmp_path / "models" / "model.pt")
    command = bundle_command(
        cxr_bundle,
        ["inference.json", "multi_gpu_inference.json", "quick.json"],
        nproc=2,
        input=image,
        ckpt_dir=tmp_path / "models",
        output_dir=tmp_path / "out",
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "error: 1 input(s) for 2 processes: run torchrun with --nproc_per_node at most 1" in result.stderr
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_rank_handlers_refuse_a_writer_that_would_write_one_shard(tmp_path):
    network = torch.nn.Linear(1, 1)
    torch.save(network.state_dict(), tmp_path / "w.pt")
    writer = PredictionCSVWriter(tmp_path / "p.csv", labels=["a"])
    assert rank_handlers([LoadWeights(tmp_path / "w.pt", network)])  # no process group: everything kept
    with pytest.raises(ValueError, match="use medzoo.distributed.GatheredPredictionCSVWriter"):
        rank_handlers([writer])


def test_comparisons_find_differences(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "m.json").write_text(json.dumps({"dice": 0.5, "per_class": {"x": None, "y": 0.25}, "n": 3}))
    (tmp_path / "b" / "m.json").write_text(json.dumps({"dice": 0.5000001, "per_class": {"x": 0.1, "y": 0.25}, "n": 4}))
    problems = compare_metrics(tmp_path / "a" / "m.json", tmp_path / "b" / "m.json")
    assert [p.split(":")[0] for p in problems] == ["n", "per_class/x"]
    (tmp_path / "a" / "m.json").write_text("1")
    (tmp_path / "a" / "only.csv").write_text("x")
    expected = [f"only.csv: only in {tmp_path / 'a'}", "m.json: differs"]
    assert compare_files(tmp_path / "a", tmp_path / "b") == expected


@pytest.mark.parametrize(
    "row, agrees",
    [
        ("a.png,0.547650,3", True),  # a value on a rounding boundary, written either way
        ("a.png,0.547653,3", False),  # two units in the last place
        ("a.png,0.547651,4", False),  # integers must be equal
        ("b.png,0.547651,3", False),  # text must be equal
        ("a.png,0.547651", False),  # a missing cell
    ],
)
def test_csv_files_agree_to_one_unit_in_the_last_written_place(tmp_path, row, agrees):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "predictions.csv").write_text("file,Hernia,n\na.png,0.547651,3\n")
    (tmp_path / "b" / "predictions.csv").write_text(f"file,Hernia,n\n{row}\n")
    assert compare_files(tmp_path / "a", tmp_path / "b") == ([] if agrees else ["predictions.csv: differs"])


#: Run by torchrun in the test below: a DDP training step between joining and leaving the process group, then the
#: network freed; prints the names of the process's threads still running. With the argument ``zoo`` the group is
#: joined by ``init_distributed``; with ``plain`` by ``init_process_group`` before anything imports
#: ``torch.distributed.nn`` (what the bundles' ``multi_gpu_train.json`` used to do).
_DDP_THREADS_SCRIPT = """
import gc, glob, sys
import torch
import torch.distributed as dist
if sys.argv[1] == "zoo":
    from medzoo.distributed import init_distributed
    init_distributed()
else:
    dist.init_process_group("gloo")
network = torch.nn.parallel.DistributedDataParallel(torch.nn.Conv2d(2, 2, 3))
network(torch.randn(2, 2, 8, 8)).mean().backward()
dist.barrier()
dist.destroy_process_group()
del network
gc.collect()
print("threads:", sorted(open(f).read().strip() for f in glob.glob("/proc/self/task/*/comm")))
"""


def _threads_after_ddp(script, how: str) -> list[str]:
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), how]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("threads:")]
    assert len(lines) == 2, result.stdout
    return lines


def test_no_gloo_thread_outlives_the_process_group_after_ddp(tmp_path):
    """``DistributedDataParallel`` imports ``torch.distributed.nn``, whose default arguments capture the group if it
    already exists: the group then outlives ``destroy_process_group`` and its gloo threads run while the interpreter
    exits, which now and then aborts a rank. Joined through ``init_distributed``, no gloo thread is left; joined
    before that import, the group's threads are still there (the check sees a leaked group)."""
    script = tmp_path / "ddp_threads.py"
    script.write_text(_DDP_THREADS_SCRIPT)
    assert all("gloo" not in line for line in _threads_after_ddp(script, "zoo"))
    assert all("gloo" in line for line in _threads_after_ddp(script, "plain"))


def test_every_multi_gpu_config_joins_and_leaves_through_medzoo_distributed():
    """One home for the process group's lifecycle: ``init_distributed`` and ``finish_distributed``."""
    for name in bundle_names():
        for config in ("multi_gpu_train.json", "multi_gpu_evaluate.json", "multi_gpu_inference.json"):
            if config not in Bundle(name).configs:
                continue
            data = json.loads(Bundle(name).config_path(config).read_text())
            assert "$medzoo.distributed.init_distributed()" in data["run"], (name, config)
            assert data["finalize"] == ["$medzoo.distributed.finish_distributed()"], (name, config)
            assert "init_process_group" not in json.dumps(data), (name, config)
