"""Whole-volume inference memory: the segmentation bundle's labels on the original grid are those of MONAI's
softmax + Invertd + argmax, made without multi-channel probabilities at the original resolution; the memory figure
reaches ``medzoo select``."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from medzoo.io_checks import save_nifti
from medzoo.volume.phantoms import draw_phantom
from medzoo.zoo import Bundle

BUNDLE = "msd_unet3d_segmentation"
# 192x160x90 voxels at 0.8x0.9x1.5 mm (2.8 M voxels: more than one slab of InvertArgMaxd), stored LPS
SHAPE, SPACING = (192, 160, 90), (0.8, 0.9, 1.5)


class IntensityClasses(nn.Module):
    """A deterministic stand-in for a trained network: class scores from the locally averaged CT-window intensity
    (background, liver, spleen, kidney centred on the phantoms' 0..1-scaled Hounsfield units), so the labels follow
    the phantom's organs with boundaries of every orientation."""

    CENTRES = (0.45, 0.647, 0.753, 0.882)  # soft tissue ~16, liver 100, spleen 145, kidney 200 HU in [-175, 250]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smooth = nn.functional.avg_pool3d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([-(((smooth - c) / 0.05) ** 2) for c in self.CENTRES], dim=1)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any torch operation returns while active: (number of elements, shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = (0, ())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.numel() > self.largest[0]:
                self.largest = (t.numel(), tuple(t.shape))
        return out


@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory) -> dict:
    """A phantom CT file, the bundle's parsed pipeline (small windows) and the preprocessed data with class scores."""
    root = tmp_path_factory.mktemp("memory")
    fov = np.asarray(SHAPE) * np.asarray(SPACING)
    phantom = draw_phantom(fov, SPACING, np.random.default_rng(3), flip_xy=True)
    path = root / "case.nii.gz"
    save_nifti(np.round(phantom.image).astype(np.int16), phantom.affine, path)
    parser = Bundle(BUNDLE).parser(
        "inference.json",
        patch_size=[48, 48, 48],
        sw_batch_size=2,
        output_dir=str(root / "new"),
        device="$torch.device('cpu')",
    )
    preprocessing = parser.get_parsed_content("preprocessing")
    data = preprocessing({"image": str(path)})
    with torch.no_grad():
        data["pred"] = parser.get_parsed_content("inferer")(data["image"][None], IntensityClasses())[0]
    return {
        "root": root,
        "path": path,
        "truth": phantom.label,
        "parser": parser,
        "preprocessing": preprocessing,
        "data": data,
    }


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def test_labels_on_the_original_grid_match_monai_softmax_invertd_argmax(phantom_case):
    from monai.transforms import Activationsd, Compose, Invertd, SaveImaged

    from medzoo.volume.transforms import ArgMaxd

    root, data = phantom_case["root"], phantom_case["data"]
    before = Compose(
        [  # the bundle's postprocessing until this change
            Activationsd("pred", softmax=True),
            Invertd(
                "pred", transform=phantom_case["preprocessing"], orig_keys="image", nearest_interp=False, to_tensor=True
            ),
            ArgMaxd("pred"),
            SaveImaged(
                "pred",
                output_dir=str(root / "old"),
                output_postfix="seg",
                output_dtype=np.uint8,
                resample=False,
                separate_folder=False,
                print_log=False,
            ),
        ]
    )
    before({k: v.clone() for k, v in data.items()})
    phantom_case["parser"].get_parsed_content("postprocessing")({k: v.clone() for k, v in data.items()})
    old, new = (nib.load(root / d / "case_seg.nii.gz") for d in ("old", "new"))
    assert new.shape == old.shape == SHAPE and new.get_data_dtype() == np.uint8
    np.testing.assert_allclose(new.affine, old.affine, atol=1e-5)
    np.testing.assert_allclose(new.affine, nib.load(phantom_case["path"]).affine, atol=1e-5)
    old, new, truth = (np.asarray(x) for x in (old.dataobj, new.dataobj, phantom_case["truth"]))
    for organ in (1, 2, 3):  # the stand-in network finds every organ: the comparison is not of empty maps
        assert _dice(old == organ, truth == organ) > 0.5, organ
        assert _dice(new == organ, old == organ) >= 0.999, organ
    assert (new == old).mean() >= 0.999


def test_no_multichannel_probabilities_at_the_original_resolution(phantom_case):
    data = phantom_case["data"]
    post = phantom_case["parser"].get_parsed_content("postprocessing")
    inverting = [t for t in post.transforms if not type(t).__name__.startswith("Save")]
    watch = LargestTensor()
    with watch:
        for step in inverting:
            data = step({k: v.clone() for k, v in data.items()})
    labels, channels = data["pred"], phantom_case["data"]["pred"].shape[0]
    assert watch.largest[0] < channels * int(np.prod(SHAPE)), f"a tensor of shape {watch.largest[1]} was made"
    assert labels.shape == (1, *SHAPE) and not labels.dtype.is_floating_point and labels.dtype == torch.uint8


def test_invert_argmaxd_names_a_step_it_cannot_undo(phantom_case):
    from monai.transforms import SpatialPadd

    from medzoo.volume.transforms import InvertArgMaxd

    data = {k: v.clone() for k, v in phantom_case["data"].items()}
    data = SpatialPadd(["image", "pred"], [d + 2 for d in data["image"].shape[1:]])(data)
    with pytest.raises(ValueError, match="undoes only orientation and spacing.*SpatialPad.*use Invertd"):
        InvertArgMaxd("pred")(data)


def test_benchmark_child_reports_every_stage(phantom_case, tmp_path):
    from benchmarks import volume_memory

    args = volume_memory.build_parser().parse_args(
        [
            "--child",
            "bundle",
            "--volume",
            str(phantom_case["path"]),
            "--output_dir",
            str(tmp_path),
            "--roi",
            "96",
            "96",
            "96",
            "--overlap",
            "0",
            "--sw_batch_size",
            "1",
        ]
    )
    result = volume_memory.run_child(args)
    assert [s["stage"] for s in result["stages"]] == ["startup", "load", "resample", "sliding window", "invert", "save"]
    assert result["stages"][4]["steps"] == ["InvertArgMaxd"] and result["stages"][5]["steps"] == ["SaveImaged"]
    assert all(s["peak_rss_mib"] > 0 for s in result["stages"])
    assert result["peak_rss_mib"] == max(s["peak_rss_mib"] for s in result["stages"])
    assert nib.load(result["output"]).shape == SHAPE


def test_select_reads_the_whole_volume_memory_figure(tmp_path):
    from medzoo.selection import format_report, select_bundles

    def entry(name, memory=None, benchmark=None):
        return {
            "name": name,
            "task": "CT segmentation",
            "version": "1.0.0",
            "parameters": 1000,
            "modality": ["ct"],
            "benchmark": benchmark,
            "memory": memory,
        }

    index = tmp_path / "zoo_index.json"
    index.write_text(
        json.dumps(
            {
                "bundles": [
                    entry(
                        "lean",
                        memory={
                            "version": "1.0.0",
                            "peak_memory_mb": 2900,
                            "task": "whole-volume inference",
                            "volume_shape": [512, 512, 300],
                        },
                        benchmark={"version": "1.0.0", "peak_memory_mb": 900},
                    ),
                    entry(
                        "hungry", memory={"version": "1.0.0", "peak_memory_mb": 6400, "volume_shape": [512, 512, 300]}
                    ),
                    entry("network_only", benchmark={"version": "1.0.0", "peak_memory_mb": 1200}),
                    entry("stale", memory={"version": "0.9.0", "peak_memory_mb": 100}),
                ]
            }
        )
    )
    verdicts = {c.name: c for c in select_bundles(max_memory_mb=4000, index_file=index)}
    assert verdicts["lean"].kept and verdicts["lean"].memory_mb == 2900  # the whole-volume figure, not the network's
    assert any(
        "peak memory 2900 MB (whole-volume inference on 512x512x300) <= 4000" in r for r in verdicts["lean"].reasons
    )
    assert not verdicts["hungry"].kept
    assert verdicts["network_only"].kept and verdicts["network_only"].memory_source == "bare network at batch 1"
    assert not verdicts["stale"].kept and any(
        "measured memory on v0.9.0, not v1.0.0" in r for r in verdicts["stale"].reasons
    )
    assert "peak memory: 2900 MB" in format_report(list(verdicts.values()))


def test_resampling_to_spacing_shrinks_first_and_makes_nothing_larger_than_its_input():
    from medzoo.spatial import resample_to_spacing

    volume = torch.rand(40, 40, 200)  # 1 mm in-plane, 0.5 mm slices -> 0.8 mm in-plane (x1.25), 2 mm slices (/4)
    watch = LargestTensor()
    with watch:
        resampled, _ = resample_to_spacing(volume, np.diag([1.0, 1.0, 0.5, 1.0]), (0.8, 0.8, 2.0))
    assert resampled.shape[:2] == (50, 50) and resampled.shape[2] in (50, 51)  # MONAI grid: the last slab may stay
    assert watch.largest[0] <= volume.numel(), f"a {watch.largest[1]} intermediate from a {tuple(volume.shape)} volume"
