"""The whole-chain inference (motion -> features -> MI segmentation) and its command."""

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from medzoo.cli_commands import ZooCLI
from medzoo.cmr.chain import predict_mi, run_chain
from medzoo.cmr.motion import write_init_weights
from medzoo.cmr.synthetic import generate_cmr_sample
from medzoo.io_checks import InputFileError, save_nifti
from medzoo.zoo import Bundle


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    generate_cmr_sample(root / "data", num_cases=1, slices_per_case=2, frames=4, image_size=44, seed=2)
    parser = Bundle("cmr_mi_segmentation").parser("inference.json")
    motion = write_init_weights(parser.get_parsed_content("motion_network_def"), root / "motion.pt")
    mi = write_init_weights(parser.get_parsed_content("network_def"), root / "mi.pt", seed=1)
    return {
        "root": root,
        "cine": root / "data/images/cmr/case_000/slice_01.nii.gz",
        "mask": root / "data/labels/cmr/cmr_Myo_mask/case_000.nii.gz",
        "motion": motion,
        "mi": mi,
    }


def test_chain_writes_a_mask_with_the_input_header(case, tmp_path):
    output = run_chain(case["cine"], case["mask"], 1, tmp_path / "out" / "mi.nii.gz", case["motion"], case["mi"])
    written, cine = nib.load(str(output)), nib.load(str(case["cine"]))
    np.testing.assert_array_equal(written.affine, cine.affine)
    assert written.header.get_zooms() == cine.header.get_zooms()
    assert written.shape == (1, 44, 44) and written.get_data_dtype() == np.uint8  # 44 is not a multiple of 8
    mi = np.asarray(written.dataobj)[0]
    myo = np.asarray(nib.load(str(case["mask"])).dataobj)[1]
    assert set(np.unique(mi)) <= {0, 1} and not (mi & (1 - myo)).any()  # only inside the myocardium
    assert [p.name for p in output.parent.iterdir()] == ["mi.nii.gz"]


class _Constant(nn.Module):
    """A stand-in MI network: the same logit everywhere, (B, 4, H, W) -> (B, 1, H, W)."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(logit))

    def forward(self, x):
        return self.logit.expand(x.shape[0], 1, *x.shape[2:])


def test_prediction_is_the_thresholded_probability_inside_the_myocardium(case):
    motion = Bundle("cmr_mi_segmentation").parser("inference.json").get_parsed_content("motion_network_def").eval()
    everywhere = predict_mi(case["cine"], case["mask"], 1, motion, _Constant(5.0))
    np.testing.assert_array_equal(everywhere["mi"], everywhere["myo"])
    assert everywhere["ddf"].shape == (2, 44, 44) and everywhere["strain"].shape == (44, 44)
    assert not predict_mi(case["cine"], case["mask"], 1, motion, _Constant(-5.0))["mi"].any()


def test_chain_refuses_weights_that_do_not_fit(case, tmp_path):
    with pytest.raises(ValueError, match=r"motion.pt do not fit the AttentionUnet"):
        run_chain(case["cine"], case["mask"], 1, tmp_path / "mi.nii.gz", case["motion"], case["motion"])
    with pytest.raises(ValueError, match=r"mi.pt do not fit the LocalNet"):
        run_chain(case["cine"], case["mask"], 1, tmp_path / "mi.nii.gz", case["mi"], case["mi"])
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        run_chain(case["cine"], case["mask"], 1, tmp_path / "mi.nii.gz", tmp_path / "nothing.pt", case["mi"])
    assert not (tmp_path / "mi.nii.gz").exists()


def test_chain_rejects_bad_inputs(case, tmp_path):
    with pytest.raises(ValueError, match="slice index 5 out of range"):
        run_chain(case["cine"], case["mask"], 5, tmp_path / "mi.nii.gz", case["motion"], case["mi"])
    other = save_nifti(np.zeros((2, 40, 40), np.uint8), np.eye(4), tmp_path / "small_mask.nii.gz")
    with pytest.raises(ValueError, match=r"small_mask.nii.gz: slice 1 is \(40, 40\)"):
        run_chain(case["cine"], other, 1, tmp_path / "mi.nii.gz", case["motion"], case["mi"])
    with pytest.raises(InputFileError, match="no_cine.nii.gz: file not found"):
        run_chain(tmp_path / "no_cine.nii.gz", case["mask"], 1, tmp_path / "mi.nii.gz", case["motion"], case["mi"])


def test_cli_command(case, tmp_path, capsys):
    import fire

    output = tmp_path / "cli.nii.gz"
    fire.Fire(
        ZooCLI,
        name="medzoo",
        command=[
            "cmr-infer",
            f"--input_cmr={case['cine']}",
            f"--input_mask={case['mask']}",
            "--slice_index=0",
            f"--output={output}",
            f"--motion_checkpoint={case['motion']}",
            f"--checkpoint={case['mi']}",
            "--es_frame=1",
        ],
    )
    assert nib.load(str(output)).shape == (1, 44, 44) and "MI mask written to" in capsys.readouterr().out


@pytest.mark.slow
def test_bundle_inference_restores_the_input_size_and_skips_bad_files(case, tmp_path):
    import shutil

    from medzoo.weights import write_init_weights as write_bundle_init
    from medzoo.workflows import run_configs

    inputs = tmp_path / "inputs" / "case_000"
    shutil.copytree(case["root"] / "data/images/cmr/case_000", inputs)
    (inputs / "slice_09.nii.gz").write_bytes(b"truncated")
    bundle = Bundle("cmr_motion_estimation")
    write_bundle_init(bundle, tmp_path / "models" / "model.pt")
    run_configs(
        bundle,
        ["inference.json"],
        input=str(inputs.parent),
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "out"),
        spatial_size=[48, 48],
        num_workers=0,
        batch_size=2,
    )
    written = sorted(p.name for p in (tmp_path / "out" / "case_000").iterdir())
    assert written == ["slice_00_ddf.nii", "slice_01_ddf.nii"]  # float fields are written uncompressed
    ddf, cine = nib.load(str(tmp_path / "out/case_000/slice_01_ddf.nii")), nib.load(str(case["cine"]))
    assert ddf.shape == (2, 44, 44)  # padded to 48 for the network, cropped back
    np.testing.assert_array_equal(ddf.affine, cine.affine)


def test_init_weights_command_is_deterministic(tmp_path):
    """``medzoo init-weights <bundle>`` of the three cardiac bundles, the MI bundle's frozen motion network too."""
    import shutil

    from medzoo.cli import main
    from medzoo.paths import BUNDLES_DIR
    from medzoo.weights import load_state_dict, sha256sum

    cardiac = ("cmr_motion_estimation", "cmr_lge_registration", "cmr_mi_segmentation")
    for name in cardiac:
        shutil.copytree(BUNDLES_DIR / name / "configs", tmp_path / name / "configs")

    def written(*flags: str) -> list[str]:
        for name in cardiac:
            main(["init-weights", str(tmp_path / name), *flags])
        files = sorted(tmp_path.glob("*/models/*.pt"))
        assert [str(f.relative_to(tmp_path)) for f in files] == [
            "cmr_lge_registration/models/model.pt",
            "cmr_mi_segmentation/models/model.pt",
            "cmr_mi_segmentation/models/motion_model.pt",
            "cmr_motion_estimation/models/model.pt",
        ]
        return [sha256sum(f) for f in files]

    first = written()
    assert written() == first
    assert written("--seed", "1") != first
    for name in cardiac:  # each file fits its bundle's network exactly
        Bundle(tmp_path / name).network().load_state_dict(load_state_dict(tmp_path / name / "models" / "model.pt"))


def test_benchmark_times_the_motion_network_with_the_segmentation_network(tmp_path):
    """The MI bundle's bare networks, as the benchmark measures them, are prepare_batch's motion network followed by
    the segmentation network; other bundles have no input network."""
    from medzoo.bench.measure import input_network, measure, scratch_weights

    bundle = Bundle("cmr_mi_segmentation")
    weights = scratch_weights(bundle, tmp_path)
    upstream = input_network(bundle, tmp_path)
    assert upstream is not None and upstream.in_channels == 2
    frames = torch.rand(2, 2, 32, 32)
    prepare = bundle.parser("inference.json", ckpt_dir=str(tmp_path)).get_parsed_content("prepare_batch")
    features, _ = prepare({"frames": frames})
    torch.testing.assert_close(upstream(frames), features)
    assert features.shape == (2, 4, 32, 32)
    chain = measure(bundle, "torch", weights, batch_sizes=(1,), warmup=0, runs=1, with_input_network=True)
    alone = measure(bundle, "torch", weights, batch_sizes=(1,), warmup=0, runs=1)
    assert chain["input_network"] == "MotionFeatures" and alone["input_network"] is None
    assert input_network(Bundle("cmr_motion_estimation"), tmp_path) is None


def test_slice_writer_refuses_an_unknown_extension(tmp_path):
    from medzoo.cmr.engines import SliceNiftiWriter

    with pytest.raises(ValueError, match="output_ext must be '.nii.gz' or '.nii', got '.nrrd'"):
        SliceNiftiWriter(tmp_path, "ddf", output_ext=".nrrd")
