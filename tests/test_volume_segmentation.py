"""The 3D segmentation bundle: network variants by configuration, learning on phantoms, outputs in original space."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

BUNDLE = "msd_unet3d_segmentation"
VARIANTS = {"unet": [], "attention_unet": ["attention_unet.json"], "vnet": ["vnet.json"]}
# The tiny but learnable settings of configs/demo.json (32^3 phantoms at 3 mm, a 4-level U-Net, a high learning rate),
# as run by `medzoo quickstart`, so the model card's figures are this test's.
DEMO = ["demo.json"]
QUIET = {"progress_bar": False}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_is_chosen_by_configuration_and_exports(variant):
    parser = Bundle(BUNDLE).parser("inference.json", *VARIANTS[variant], unet_channels=[8, 16, 32])
    network = parser.get_parsed_content("network_def").eval()
    expected = {"unet": "UNet", "attention_unet": "AttentionUNet", "vnet": "VNet"}[variant]
    assert type(network).__name__ == expected
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        y = network(x)
        assert y.shape == (1, 4, 32, 32, 32)
        torch.testing.assert_close(torch.jit.script(network)(x), y, atol=1e-4, rtol=1e-4)


def test_attention_unet_uses_the_shared_attention_blocks():
    from medzoo.networks.blocks import CBAM, AttentionGate

    network = (
        Bundle(BUNDLE)
        .parser("inference.json", "attention_unet.json", unet_channels=[8, 16, 32])
        .get_parsed_content("network_def")
    )
    kinds = [type(m) for m in network.modules()]
    assert kinds.count(CBAM) == 5 and kinds.count(AttentionGate) == 2


@pytest.mark.slow
def test_attention_unet_on_mri_trains_and_infers(tmp_path):
    bundle = Bundle(BUNDLE)
    dirs = {
        "dataset_dir": str(tmp_path / "data"),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
    }
    run_configs(bundle, ["sample_data.json", "mri.json", "quick.json"], dataset_dir=dirs["dataset_dir"])
    assert json.loads((tmp_path / "data" / "dataset.json").read_text())["modality"] == {"0": "MRI"}
    run_configs(bundle, ["train.json", "attention_unet.json", "mri.json", "quick.json"], workflow_type="train", **dirs)
    run_configs(
        bundle, ["inference.json", "attention_unet.json", "mri.json", "quick.json"], workflow_type="infer", **dirs
    )
    outputs = sorted((tmp_path / "eval").glob("*_seg.nii.gz"))
    assert (
        len(outputs) == 1
        and nib.load(outputs[0]).shape == nib.load(tmp_path / "data" / "imagesTs" / "case_008.nii.gz").shape
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Sample data, training and evaluation of the default U-Net at tiny scale; the run's folders."""
    root = tmp_path_factory.mktemp("seg")
    dirs = {"dataset_dir": str(root / "data"), "ckpt_dir": str(root / "models"), "output_dir": str(root / "eval")}
    bundle = Bundle(BUNDLE)
    run_configs(bundle, ["sample_data.json", *DEMO], dataset_dir=dirs["dataset_dir"])
    run_configs(bundle, ["train.json", *DEMO], workflow_type="train", **QUIET, **dirs)
    run_configs(bundle, ["train.json", "evaluate.json", *DEMO], workflow_type="eval", **QUIET, **dirs)
    return dirs


@pytest.mark.slow
def test_unet_learns_the_phantom_organs(trained):
    metrics = json.loads((Path(trained["output_dir"]) / "metrics.json").read_text())
    assert metrics["num_samples"] >= 2
    assert metrics["mean_dice"] >= 0.85, metrics
    assert set(metrics["mean_dice_per_class"]) == {"liver", "spleen", "kidney"}
    assert min(metrics["mean_dice_per_class"].values()) >= 0.7, metrics
    assert metrics["hd95_non_finite"] == 0 and 0 <= metrics["hd95"] < 4.0, metrics  # voxels of the original images


@pytest.mark.slow
def test_inference_writes_segmentations_in_the_original_image_space(trained):
    data = Path(trained["dataset_dir"])
    out = Path(trained["output_dir"]) / "inference"
    run_configs(
        Bundle(BUNDLE),
        ["inference.json", *DEMO],
        workflow_type="infer",
        **{**trained, "output_dir": str(out)},
        input=str(data / "datalist.json"),
    )
    held_out = json.loads((data / "datalist.json").read_text())["test"]
    dice = []
    for case in held_out:
        image, truth = nib.load(data / case["image"]), nib.load(data / case["label"])
        seg = nib.load(out / Path(case["image"]).name.replace(".nii.gz", "_seg.nii.gz"))
        assert seg.shape == image.shape and seg.get_data_dtype() == np.uint8
        np.testing.assert_allclose(seg.affine, image.affine, atol=1e-4)
        pred, ref = np.asarray(seg.dataobj), np.asarray(truth.dataobj)
        dice += [_dice(pred == c, ref == c) for c in (1, 2, 3)]
    assert np.mean(dice) >= 0.85, dice
    assert not list(out.glob(".*")), "partial files left behind"


# SwinUNETR on the demo phantoms: windows of 64x32x32 (every axis a multiple of 32, and a bottleneck of 2x1x1 voxels,
# which instance norm needs), the smallest feature_size (12), and a training of 20 iterations of 2 crops, all the CPU
# budget allows: enough for the largest organ, the liver, and for the mean over the organs to leave the untrained
# network's level, not for the small organs.
SWIN = ["swin_unetr.json"]
SWIN_TINY = {
    "patch_size": [64, 32, 32],
    "crops_per_volume": 1,
    "max_epochs": 4,
    "val_interval": 4,
    "learning_rate": 0.005,
    **QUIET,
}
SWIN_MIN_DICE = {"mean": 0.15, "liver": 0.5}


def _swin_network(**overrides) -> torch.nn.Module:
    return Bundle(BUNDLE).parser("inference.json", *SWIN, **overrides).get_parsed_content("network_def").eval()


def test_swin_unetr_is_chosen_by_configuration():
    from monai.networks.nets import SwinUNETR

    network = _swin_network(patch_size=[64, 32, 32])
    assert type(network) is SwinUNETR and network.encoder1.layer.conv1.conv.out_channels == 12
    with torch.no_grad():
        assert network(torch.randn(1, 1, 64, 32, 32)).shape == (1, 4, 64, 32, 32)
    # the bundle's own window, 96x96x64, fits SwinUNETR as it is
    assert type(_swin_network()) is SwinUNETR


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"patch_size": [48, 48, 48]}, "divisible by 32"),
        ({"patch_size": [64, 32, 32], "swin_feature_size": 18}, "multiple of 12"),
        ({"patch_size": [32, 32, 32]}, "more than one voxel"),
    ],
)
def test_swin_unetr_settings_it_cannot_run_are_one_user_error(overrides, hint):
    from medzoo.errors import find_user_error

    with pytest.raises(Exception) as raised:
        _swin_network(**overrides)
    error = find_user_error(raised.value)
    assert error is not None and hint in str(error) and "configs/swin_unetr.json" in str(error), raised.value


def test_swin_unetr_export_is_not_supported_as_the_card_says(tmp_path):
    from medzoo.export import export_onnx

    network, x = _swin_network(patch_size=[64, 32, 32]), torch.rand(2, 1, 64, 32, 32)
    with pytest.raises((torch.jit.frontend.NotSupportedError, RuntimeError)):
        torch.jit.script(network)
    with pytest.raises(torch.onnx.OnnxExporterError, match="instance_norm"):
        export_onnx(network, x, tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir()), "partial ONNX file left behind"
    card = (Bundle(BUNDLE).root / "docs" / "README.md").read_text()
    assert "not exported" in card and "swin_unetr.json" in card


@pytest.fixture(scope="module")
def swin_metrics(tmp_path_factory) -> dict:
    """Held-out metrics of SwinUNETR untrained (seeded initial weights) and after the short training on phantoms."""
    from medzoo.weights import save_weights

    root = tmp_path_factory.mktemp("swin")
    data = {"dataset_dir": str(root / "data"), "output_dir": str(root / "eval")}
    bundle = Bundle(BUNDLE)
    run_configs(bundle, ["sample_data.json", *DEMO], dataset_dir=data["dataset_dir"])
    torch.manual_seed(0)
    untrained = bundle.parser("train.json", *DEMO, *SWIN, **SWIN_TINY).get_parsed_content("network_def")
    save_weights(untrained.state_dict(), root / "untrained" / "model.pt")
    metrics = {}
    for name in ("untrained", "trained"):
        dirs = {**data, "ckpt_dir": str(root / name), "output_dir": str(root / name / "eval")}
        if name == "trained":
            run_configs(bundle, ["train.json", *DEMO, *SWIN], workflow_type="train", **SWIN_TINY, **dirs)
        run_configs(bundle, ["train.json", "evaluate.json", *DEMO, *SWIN], workflow_type="eval", **SWIN_TINY, **dirs)
        metrics[name] = json.loads((root / name / "eval" / "metrics.json").read_text())
    return metrics


@pytest.mark.slow
def test_swin_unetr_learns_the_phantom_organs(swin_metrics):
    untrained, trained = swin_metrics["untrained"], swin_metrics["trained"]
    assert trained["num_samples"] >= 2 and set(trained["mean_dice_per_class"]) == {"liver", "spleen", "kidney"}
    assert untrained["mean_dice"] < SWIN_MIN_DICE["mean"] <= trained["mean_dice"], swin_metrics
    liver = [m["mean_dice_per_class"]["liver"] for m in (untrained, trained)]
    assert liver[0] < SWIN_MIN_DICE["liver"] <= liver[1], swin_metrics


def test_sliding_window_script_reports_memory_and_the_overhead_over_the_network():
    from benchmarks import sliding_window_overhead

    # 2 windows along the first axis
    result = sliding_window_overhead.measure(BUNDLE, [120, 96, 64], sw_batch_size=2, configs=[], repeats=1)
    assert result["windows"] == 2 and result["output_shape"] == [1, 120, 96, 64]
    assert result["seconds"] > 0 and result["network_seconds"] > 0 and result["peak_rss_mib"] > 0
    assert result["sliding_window_overhead"] == pytest.approx(
        result["seconds"] / result["network_seconds"] - 1, abs=0.05
    )


def test_argmaxd_matches_monai_as_discreted():
    from monai.data import MetaTensor
    from monai.transforms import AsDiscreted

    from medzoo.volume.transforms import ArgMaxd

    scores = torch.rand(4, 12, 10, 8)
    scores[:, 0] = 0.25  # a slab of ties: the first maximal channel wins in both
    scores[2, 1, 1, 1] = float("nan")  # NaN counts as the largest, as in torch.argmax
    image = MetaTensor(
        scores, affine=torch.diag(torch.tensor([1.5, 1.5, 2.0, 1.0])), meta={"filename_or_obj": "a.nii.gz"}
    )
    ours = ArgMaxd("pred")({"pred": image})["pred"]
    monai = AsDiscreted("pred", argmax=True)({"pred": image.clone()})["pred"]
    assert isinstance(ours, MetaTensor) and ours.shape == (1, 12, 10, 8) and ours.dtype == monai.dtype
    assert torch.equal(ours.as_tensor(), monai.as_tensor()) and ours[0, 1, 1, 1] == 2
    assert torch.equal(ours.affine, image.affine) and ours.meta["filename_or_obj"] == "a.nii.gz"
