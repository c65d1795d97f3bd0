"""Export (TorchScript, ONNX + ONNX Runtime parity), the ONNX inference config, and compression with its report."""

import csv
import json

import pytest
import torch
from torch import nn

from medzoo.bench.compare import comparison_markdown
from medzoo.compress import compress_bundle, prune_network, sparsity
from medzoo.export import OnnxRuntimeNetwork, export_bundle
from medzoo.paths import bundle_names
from medzoo.quantize import calibration_inputs
from medzoo.weights import write_frozen_init_weights, write_init_weights
from medzoo.workflows import run_configs, without_weight_loaders
from medzoo.zoo import Bundle


@pytest.fixture(scope="module")
def weights(cxr_bundle, tmp_path_factory):
    return write_init_weights(cxr_bundle, tmp_path_factory.mktemp("weights") / "model.pt")


@pytest.fixture(scope="module")
def sample_data(cxr_bundle, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample") / "data"
    run_configs(cxr_bundle, ["sample_data.json", "quick.json"], dataset_dir=str(folder))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", bundle_names())
def test_onnx_export_matches_eager_in_onnx_runtime(name, tmp_path):
    bundle = Bundle(name)
    weights = write_init_weights(bundle, tmp_path / "model.pt")
    report = export_bundle(bundle, "onnx", weights, output=tmp_path / "model.onnx")
    assert report["max_abs_diff"] <= 1e-3 * max(1.0, report["output_scale"])
    assert json.loads((tmp_path / "model.onnx.json").read_text())["sha256"] == report["sha256"]


def test_torchscript_export_writes_a_parity_report(cxr_bundle, weights, tmp_path):
    report = export_bundle(cxr_bundle, "ts", weights, output=tmp_path / "model.ts")
    assert report["max_abs_diff"] < 1e-4 and (tmp_path / "model.ts").is_file()


def test_export_refuses_unknown_format_and_missing_weights(cxr_bundle, weights, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_bundle(cxr_bundle, "tflite", weights)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        export_bundle(cxr_bundle, "onnx", tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        OnnxRuntimeNetwork(tmp_path / "missing.onnx")
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match=r"concurrent_runs must be 0 \(one per core\) or more"):
        OnnxRuntimeNetwork(tmp_path / "model.onnx", concurrent_runs=-1)


def test_onnx_inference_config_gives_the_eager_predictions(cxr_bundle, weights, sample_data, tmp_path):
    export_bundle(cxr_bundle, "onnx", weights, output=tmp_path / "models" / "model.onnx")
    common = {"dataset_dir": str(sample_data), "num_workers": 0}
    run_configs(cxr_bundle, ["inference.json"], ckpt_path=str(weights), output_dir=str(tmp_path / "eager"), **common)
    run_configs(
        cxr_bundle,
        ["inference.json", "inference_onnx.json"],
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "onnx"),
        **common,
    )
    # batches of 3 images, run one image at a time on two single-threaded runs at once
    run_configs(
        cxr_bundle,
        ["inference.json", "inference_onnx.json"],
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "concurrent"),
        batch_size=3,
        onnx_threads=1,
        onnx_concurrent_runs=2,
        **common,
    )

    def rows(folder):
        with open(tmp_path / folder / "predictions.csv") as f:
            return list(csv.DictReader(f))

    eager = rows("eager")
    assert len(eager) > 3
    for other in (rows("onnx"), rows("concurrent")):
        assert len(other) == len(eager)
        for a, b in zip(eager, other):
            assert a["file"] == b["file"]
            diffs = [abs(float(a[k]) - float(b[k])) for k in a if k != "file"]
            assert max(diffs) < 1e-4


def test_without_weight_loaders_removes_only_loading_handlers():
    config = {
        "handlers": [{"_target_": "medzoo.handlers.LoadWeights"}, {"_target_": "StatsHandler"}],
        "validate": {"handlers": [{"_target_": "CheckpointLoader"}, "keep"]},
    }
    assert without_weight_loaders(config) == {
        "handlers": [{"_target_": "StatsHandler"}],
        "validate": {"handlers": ["keep"]},
    }


def test_magnitude_pruning_zeroes_the_smallest_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    net(torch.zeros(1, 1, 6, 6))
    smallest = min(p.abs().max().item() for p in (net[0].weight, net[3].weight))
    prune_network(net, "prune_magnitude", 0.4)
    assert sparsity(net) == pytest.approx(0.4, abs=0.01)
    assert not any(name.endswith("_orig") for name, _ in net.named_parameters())  # pruning made permanent
    kept = torch.cat([net[0].weight.flatten(), net[3].weight.flatten()])
    assert kept[kept != 0].abs().min() <= smallest


def test_channel_pruning_zeroes_whole_output_channels():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 10, 3)
    prune_network(nn.Sequential(conv), "prune_channels", 0.3)
    zero_channels = (conv.weight.flatten(1).abs().sum(1) == 0).sum().item()
    assert zero_channels == 3
    with pytest.raises(ValueError, match="amount must be in"):
        prune_network(nn.Sequential(nn.Conv2d(1, 1, 1)), "prune_channels", 1.5)


def test_calibration_inputs_go_through_the_bundles_prepare_batch(tmp_path):
    """The MI bundle's network input is computed by its frozen motion network (prepare_batch), not read from a file."""
    bundle = Bundle("cmr_mi_segmentation")
    run_configs(bundle, ["sample_data.json", "quick.json"], dataset_dir=str(tmp_path / "data"))
    write_frozen_init_weights(bundle, ckpt_dir=str(tmp_path / "models"))
    inputs = list(calibration_inputs(bundle, 2, tmp_path / "data", tmp_path / "models"))
    assert len(inputs) == 2 and all(x.shape == (1, 4, 96, 96) for x in inputs)  # [ED, flow x, flow y, strain]
    assert all(x[0, 3].min() >= 0 for x in inputs)  # the strain magnitude channel


@pytest.mark.slow
def test_int8_static_quantization_report(cxr_bundle, weights, sample_data, tmp_path):
    report = compress_bundle(
        cxr_bundle,
        "int8_static",
        weights,
        calibration_count=4,
        dataset_dir=sample_data,
        output=tmp_path / "model_int8_static.onnx",
        batch_sizes=(1, 2),
        runs=1,
    )
    assert report["size_ratio"] < 0.3
    assert report["max_abs_diff_vs_eager"] < 0.5  # logits on real preprocessed images
    variants = report["comparison"]["variants"]
    assert set(variants) == {"fp32_eager", "fp32_onnx", "int8_static"}
    for variant in variants.values():
        assert variant["latency_ms_b1"] > 0 and variant["peak_rss_mb"] > 0
        assert 0.0 <= variant["metrics"]["mean_auroc"] <= 1.0
        assert set(variant["ratios"]) >= {"size", "speedup_b1", "throughput", "peak_memory", "metric_delta"}
    assert variants["fp32_onnx"]["ratios"]["metric_delta"]["mean_auroc"] == pytest.approx(0.0, abs=1e-4)
    assert json.loads((tmp_path / "model_int8_static.onnx.json").read_text())["sha256"] == report["sha256"]
    assert "int8_static" in comparison_markdown(report["comparison"])


def test_pruning_report_says_dense_storage_gains_nothing(cxr_bundle, weights, tmp_path):
    report = compress_bundle(
        cxr_bundle, "prune_magnitude", weights, amount=0.5, output=tmp_path / "pruned.pt", measure=False
    )
    assert report["sparsity_after"] == pytest.approx(0.5, abs=0.01)
    assert report["size_ratio"] == pytest.approx(1.0, abs=0.01)
    assert "neither file size nor dense-kernel speed" in report["note"]
    with pytest.raises(ValueError, match="unknown compression method"):
        compress_bundle(cxr_bundle, "int4", weights)


@pytest.mark.slow
def test_quantization_aware_training_writes_an_int8_model(cxr_bundle, weights, sample_data, tmp_path):
    report = compress_bundle(
        cxr_bundle,
        "qat",
        weights,
        dataset_dir=sample_data,
        output=tmp_path / "qat.ts",
        fine_tune_epochs=1,
        spatial_size=[64, 64],
        batch_size=8,
        batch_sizes=(1,),
        runs=1,
    )
    model = torch.jit.load(str(tmp_path / "qat.ts"))
    assert "quantized::conv2d" in str(model.inlined_graph)  # real int8 kernels, not fake quantization
    assert model(torch.rand(3, 1, 224, 224)).shape == (3, 14)
    assert report["size_ratio"] < 0.35
    qat = report["comparison"]["variants"]["qat"]
    assert qat["backend"] == "torchscript" and 0.0 <= qat["metrics"]["mean_auroc"] <= 1.0
    with pytest.raises(ValueError, match="fine_tune_epochs >= 1"):
        compress_bundle(cxr_bundle, "qat", weights, dataset_dir=sample_data, measure=False)


@pytest.mark.slow
def test_channel_pruning_with_fine_tune_keeps_pruned_channels_zero(cxr_bundle, weights, sample_data, tmp_path):
    report = compress_bundle(
        cxr_bundle,
        "prune_channels",
        weights,
        amount=0.25,
        dataset_dir=sample_data,
        output=tmp_path / "pruned.pt",
        fine_tune_epochs=1,
        spatial_size=[64, 64],
        batch_size=8,
        measure=False,
    )
    state = torch.load(tmp_path / "pruned.pt", weights_only=True)
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    first_conv = state["features.conv0.weight"]
    assert (first_conv.flatten(1).abs().sum(1) == 0).sum().item() == round(0.25 * first_conv.shape[0])
    assert report["sparsity_after"] > 0.2 and report["fine_tune_epochs"] == 1
    untuned = torch.load(weights, weights_only=True)["features.conv0.weight"]
    kept = first_conv.flatten(1).abs().sum(1) > 0
    assert not torch.equal(first_conv[kept], untuned[kept])  # the surviving weights were trained


@pytest.mark.slow
def test_benchmark_writes_a_well_formed_report(cxr_bundle, weights, sample_data, tmp_path):
    """The benchmark runs end to end at tiny scale and reports every measurement (no timing assertions)."""
    from medzoo.bench.driver import benchmark_bundle, benchmark_summary
    from medzoo.bench.measure import ONNX_OPTION_IDS, TORCH_OPTION_IDS
    from medzoo.bench.report import benchmark_markdown
    from medzoo.bench.tuning import thread_layouts, tune_inference

    # int8 is left out here: test_int8_static_quantization_report measures it through the same compare code
    results = benchmark_bundle(
        cxr_bundle,
        dataset_dir=sample_data,
        batch_sizes=(1, 2),
        runs=1,
        int8=False,
        train_overrides={"spatial_size": [64, 64], "batch_size": 8, "num_workers": 0},
        ratio_rounds=2,
    )
    assert set(results["forward"]) == {"torch", "onnx"} == set(results["inference"])
    for e2e in results["inference"].values():
        assert e2e["inputs"] > 0 and e2e["images_per_s"] > 0 and e2e["ratio_to_forward_same_batch"] > 0
        # where a batch's time goes: the network's forward calls (hooked) take some of it, and no part is negative
        split = e2e["per_batch_ms"]
        assert set(split) == {"data_wait", "network", "rest"} and split["network"] > 0 and min(split.values()) >= 0
        # end-to-end alternated with the bare network; the row is the round of median (here: lower) ratio
        assert len(e2e["rounds"]) == 2 and e2e["ratio_to_forward_same_batch"] == min(r["ratio"] for r in e2e["rounds"])
    # each backend's bare network is measured with the thread layout the end-to-end run used
    onnx_config = cxr_bundle.parser("inference.json", "inference_onnx.json")
    assert results["inference"]["onnx"]["onnx_options"] == {
        arg: onnx_config[key] for arg, key in ONNX_OPTION_IDS.items()
    }
    eager_config = cxr_bundle.parser("inference.json")
    assert results["inference"]["torch"]["torch_options"] == {
        arg: eager_config.get_parsed_content(key) for arg, key in TORCH_OPTION_IDS.items()
    }
    assert results["forward"]["torch"]["torch_options"] is None  # the forward columns: the network as it is
    assert results["inference"]["onnx"]["forward_same_batch"]["images_per_s"] > 0
    assert results["train"]["iterations"] > 0 and 0 <= results["train"]["data_wait_ratio"] < 1
    onnx = export_bundle(cxr_bundle, "onnx", weights, output=tmp_path / "model.onnx")["model"]
    results["tuning"] = tune_inference(
        cxr_bundle, sample_data, tmp_path / "tune", batch_sizes=(2,), worker_counts=(0,), backend="onnx", model=onnx
    )
    cells, layouts = results["tuning"]["cells"], thread_layouts("onnx")
    assert [c["settings"] for c in cells] == [{"num_workers": 0, "batch_size": 2, **layout} for layout in layouts]
    # each cell ran with its own ONNX Runtime settings
    assert [c["onnx_options"]["concurrent_runs"] for c in cells] == [
        layout["onnx_concurrent_runs"] for layout in layouts
    ]
    best = results["tuning"]["best"]
    assert best["batch_size"] == 2 and best["num_workers"] == 0 and best["onnx_threads"] in (0, 1)
    parser = cxr_bundle.parser("inference.json", "inference_onnx.json")
    assert results["tuning"]["defaults"] == {
        k: parser[k] for k in ("batch_size", "num_workers", "onnx_concurrent_runs", "onnx_threads")
    }
    eager = tune_inference(
        cxr_bundle,
        sample_data,
        tmp_path / "tune_torch",
        batch_sizes=(2,),
        worker_counts=(0,),
        backend="torch",
        model=weights,
    )
    layouts = thread_layouts("torch")
    assert [c["settings"] for c in eager["cells"]] == [
        {"num_workers": 0, "batch_size": 2, **layout} for layout in layouts
    ]
    assert [c["torch_options"]["runs"] for c in eager["cells"]] == [
        layout["torch_concurrent_runs"] for layout in layouts
    ]
    threads = eager["cells"][0]["torch_threads"]  # PyTorch's default in the fresh process the cell ran in
    if threads > 1 and eager["best"]["torch_concurrent_runs"] == 1:  # the fastest cell again with one PyTorch thread
        assert [t["torch_threads"] for t in eager["torch_threads"]] == [threads, 1]
        assert all(t["steady_images_per_s"] > 0 for t in eager["torch_threads"])
        assert "1 thread" in benchmark_markdown(results | {"tuning": eager})
    else:
        assert "torch_threads" not in eager
    assert "| 2 | 0 | a run per core at once, 1 thread each |" in benchmark_markdown(results | {"tuning": eager})
    table = benchmark_markdown(results)
    assert "| 2 | 0 | 1 run at a time, a thread per core |" in table and "**fastest**" in table
    assert "Data: a data set given to the benchmark." in table and "median of 2 alternating rounds" in table
    # the header is the command that reproduces the report
    assert (
        f"`medzoo benchmark {cxr_bundle.name} --tune --batch_sizes '(1, 2)' --runs 1 --int8 False --train_overrides "
        """'{"spatial_size": [64, 64], "batch_size": 8, "num_workers": 0}' --ratio_rounds 2`"""
    ) in table
    assert table.count("\n| onnx") == 1 and table.count("\n| torch") == 1 and "data wait share" in table
    assert "\n- torch, batch " in table and "\n- onnx, batch " in table and "the rest of the iteration" in table
    summary = benchmark_summary(cxr_bundle, results)
    assert summary["version"] == cxr_bundle.metadata["version"] and summary["backend"] in ("torch", "onnx")
    assert summary["latency_ms_b1"] > 0 and summary["size_mb"] > 20  # DenseNet121 fp32: about 28 MB


def test_benchmark_tunes_only_a_backend_the_bundle_runs_end_to_end(cxr_bundle):
    from medzoo.bench.driver import benchmark_bundle
    from medzoo.bench.report import option_flags

    with pytest.raises(ValueError, match=r"one of \['torch'\] for cxr14_remedis.*tune_backend='onnx'"):
        benchmark_bundle(Bundle("cxr14_remedis_resnet50x1_classification"), tune=True, tune_backend="onnx")
    with pytest.raises(ValueError, match="tune=False, tune_backend='torch'"):
        benchmark_bundle(cxr_bundle, tune_backend="torch")
    with pytest.raises(ValueError, match="tune_backend='int8'"):
        benchmark_bundle(cxr_bundle, tune=True, tune_backend="int8")
    # the report's header repeats the choice, so the command reproduces it
    assert option_flags({"ratio_rounds": 3, "tune_backend": "torch"}) == " --tune_backend torch"


def test_time_per_item_alternates_the_functions_over_every_item():
    from medzoo.bench.timing import time_per_item

    calls = []
    medians = time_per_item(
        {"a": lambda item: calls.append(("a", item)), "b": lambda item: calls.append(("b", item))}, [1, 2], rounds=2
    )
    assert set(medians) == {"a", "b"} and all(ms >= 0 for ms in medians.values())
    # a warm-up call each on the first item, then per round all items of "a", then all of "b"
    assert calls == [("a", 1), ("b", 1)] + [("a", 1), ("a", 2), ("b", 1), ("b", 2)] * 2
    with pytest.raises(ValueError, match="no items"):
        time_per_item({"a": print}, [], rounds=1)
