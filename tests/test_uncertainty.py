"""Predictive uncertainty at inference (medzoo.uncertainty, configs/inference_uncertainty.json): the samples vary
as the method says, spatial samples are mapped back before they are combined, the outputs are complete, and the
segmenter and the DenseNet121 classifier are more uncertain on some corrupted phantoms than on clean ones (the
ordering each test states)."""

import csv
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.inferers import SimpleInferer
from monai.networks.nets import UNet
from monai.transforms import RandFlipd
from scipy.ndimage import gaussian_filter

from medzoo.errors import UserValueError
from medzoo.uncertainty import InvertEntropyd, UncertaintyInferer, dropout_layers
from medzoo.weights import write_init_weights
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

SEG = "msd_unet3d_segmentation"
CXR = "cxr14_densenet121_classification"


def _unet(dropout: float) -> UNet:
    torch.manual_seed(0)
    return UNet(3, 1, 3, channels=(4, 8), strides=(2,), num_res_units=0, dropout=dropout).eval()


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_mc_dropout_samples_vary_and_a_network_without_dropout_is_refused():
    network = _unet(dropout=0.3)
    inferer = UncertaintyInferer(SimpleInferer(), network, method="mc_dropout", num_samples=4, activation="softmax")
    image = torch.rand(2, 1, 8, 8, 8)
    with torch.no_grad():
        out = inferer(image, network)
    assert out.shape == (2, 6, 8, 8, 8)
    mean, std = out[:, :3], out[:, 3:]
    torch.testing.assert_close(mean.sum(1), torch.ones(2, 8, 8, 8))
    assert float(std.mean()) > 1e-3, "MC dropout samples do not vary"
    assert not any(m.training for m in dropout_layers(network)), "dropout left active after inference"

    with pytest.raises(UserValueError, match="no dropout layer with p > 0: use --uncertainty_method tta"):
        UncertaintyInferer(SimpleInferer(), _unet(dropout=0.0), method="mc_dropout")
    with pytest.raises(UserValueError, match="no dropout layer"):
        UncertaintyInferer(SimpleInferer(), Bundle(CXR).network(), method="tta_mc_dropout")
    with pytest.raises(UserValueError, match="num_samples >= 2"):
        UncertaintyInferer(SimpleInferer(), network, method="mc_dropout", num_samples=1)


def test_tta_maps_spatial_samples_back_before_combining_them():
    """An always-flipping augmentation on an identity network: once inverted, every sample is the input itself."""
    identity = torch.nn.Identity()
    image = torch.rand(1, 2, 6, 7, 8)
    flip = RandFlipd(keys="image", prob=1.0, spatial_axis=0)

    def run(spatial: bool) -> torch.Tensor:
        inferer = UncertaintyInferer(
            SimpleInferer(), identity, num_samples=2, augmentation=flip, activation="softmax", spatial_output=spatial
        )
        return inferer(image, identity)

    out = run(spatial=True)
    torch.testing.assert_close(out[:, :2], torch.softmax(image, 1))
    assert float(out[:, 2:].abs().max()) == 0.0
    flipped = run(spatial=False)  # not inverted: the flipped prediction
    torch.testing.assert_close(flipped[:, :2], torch.softmax(image, 1).flip(2))


def test_entropy_of_uniform_probabilities_is_log_of_the_classes():
    from monai.data import MetaTensor
    from monai.transforms import Orientation

    image = Orientation("RAS")(MetaTensor(torch.zeros(1, 4, 5, 6), affine=torch.diag(torch.tensor([-1.0, 1, 1, 1]))))
    probs = torch.full((4, 4, 5, 6), 0.25)
    probs[:, 0] = torch.tensor([1.0, 0, 0, 0])[:, None, None]
    out = InvertEntropyd("p", softmax=False)({"p": probs, "image": image})["p"]
    assert out.shape == (1, 4, 5, 6) and out.dtype == torch.float32
    entropy = out[0].numpy()[::-1]  # back on the original (flipped) grid
    np.testing.assert_allclose(entropy[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(entropy[1:], math.log(4), rtol=1e-5)


@pytest.mark.slow
def test_classifier_csv_has_mean_and_std_per_label_and_bad_inputs_stay_listed(tmp_path):
    bundle = Bundle(CXR)
    dirs = {"dataset_dir": str(tmp_path / "data"), "ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path)}
    run_configs(bundle, ["sample_data.json", "quick.json"], dataset_dir=dirs["dataset_dir"])
    write_init_weights(bundle, tmp_path / "models" / "model.pt")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for image in sorted((tmp_path / "data" / "images").iterdir())[:3]:
        (inputs / image.name).write_bytes(image.read_bytes())
    (inputs / "broken.png").write_bytes(b"not a png")
    run_configs(
        bundle,
        ["inference.json", "inference_uncertainty.json", "quick.json"],
        workflow_type="infer",
        **dirs,
        input=str(inputs),
        uncertainty_samples=4,
    )
    rows = _read_csv(tmp_path / "predictions.csv")
    labels = bundle.metadata["network_data_format"]["outputs"]["pred"]["channel_def"].values()
    assert list(rows[0]) == ["file", *labels, *(f"{label}_std" for label in labels)]
    assert len(rows) == 3
    for row in rows:
        means = np.array([float(row[label]) for label in labels])
        stds = np.array([float(row[f"{label}_std"]) for label in labels])
        assert ((means > 0) & (means < 1)).all() and (stds >= 0).all()
        assert stds.max() > 0, "TTA samples do not vary"
    errors = _read_csv(tmp_path / "errors.csv")
    assert [Path(e["file"]).name for e in errors] == ["broken.png"]

    with pytest.raises(Exception) as refused:  # DenseNet121 has no dropout: refused, not run with equal samples
        run_configs(
            bundle,
            ["inference.json", "inference_uncertainty.json", "quick.json"],
            workflow_type="infer",
            **dirs,
            input=str(inputs),
            uncertainty_method="mc_dropout",
        )
    assert "no dropout layer" in "".join(map(str, [refused.value, refused.value.__cause__]))


#: The segmenter's uncertainty run: quick settings, trained longer with dropout so that MC dropout has something to
#: sample (the same ``network_def#dropout`` at training and inference).
SEG_SETTINGS = {"max_epochs": 15, "learning_rate": 0.01, "network_def#dropout": 0.1}


def _corrupted_phantoms(clean: Path, folder: Path) -> None:
    """The clean held-out phantom and four corrupted / out-of-distribution versions of it, plus a broken file."""
    image = nib.load(clean)
    x = np.asarray(image.dataobj, dtype=np.float32)
    rng = np.random.default_rng(0)
    low, high = np.percentile(x, [1, 99])
    volumes = {
        "clean": x,
        "noise": x + rng.normal(0, 0.5 * (high - low), x.shape),
        "blur": gaussian_filter(x, 2.0),
        "inverted": high + low - x,
        "texture": gaussian_filter(rng.uniform(low, high, x.shape), 1.0),  # no anatomy at all
    }
    folder.mkdir()
    for name, volume in volumes.items():
        nib.save(nib.Nifti1Image(volume.astype(np.float32), image.affine), folder / f"{name}.nii.gz")
    (folder / "broken.nii.gz").write_bytes(b"not a volume")


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("uncertainty_seg")
    dirs = {"dataset_dir": str(root / "data"), "ckpt_dir": str(root / "models"), "output_dir": str(root / "eval")}
    bundle = Bundle(SEG)
    run_configs(bundle, ["sample_data.json", "quick.json"], dataset_dir=dirs["dataset_dir"])
    run_configs(bundle, ["train.json", "quick.json"], workflow_type="train", **dirs, **SEG_SETTINGS)
    _corrupted_phantoms(next((root / "data" / "imagesTs").glob("*.nii.gz")), root / "inputs")
    return {**dirs, "input": str(root / "inputs")}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["tta", "mc_dropout"])
def test_segmenter_writes_entropy_volumes_and_is_more_uncertain_on_inverted_phantoms(segmenter, method, tmp_path):
    run_configs(
        Bundle(SEG),
        ["inference.json", "inference_uncertainty.json", "quick.json"],
        workflow_type="infer",
        **{**segmenter, "output_dir": str(tmp_path)},
        **{"network_def#dropout": SEG_SETTINGS["network_def#dropout"], "uncertainty_method": method},
    )
    names = ["blur", "clean", "inverted", "noise", "texture"]
    for name in names:
        source = nib.load(Path(segmenter["input"]) / f"{name}.nii.gz")
        seg, entropy = (nib.load(tmp_path / f"{name}_{kind}.nii.gz") for kind in ("seg", "entropy"))
        assert seg.shape == entropy.shape == source.shape and entropy.get_data_dtype() == np.float32
        np.testing.assert_allclose(entropy.affine, source.affine, atol=1e-4)
        values = np.asarray(entropy.dataobj)
        assert values.min() >= 0 and values.max() <= math.log(4) + 1e-5  # background + 3 organs
    assert not list(tmp_path.glob("broken*")) and not list(tmp_path.glob(".*")), "partial or bad-input outputs"
    assert [Path(e["file"]).name for e in _read_csv(tmp_path / "errors.csv")] == ["broken.nii.gz"]
    summary = {Path(r["file"]).name.split(".")[0]: r for r in _read_csv(tmp_path / "uncertainty.csv")}
    assert sorted(summary) == names
    clean, inverted = summary["clean"], summary["inverted"]
    # the ordering this test holds the bundle to: an intensity-inverted phantom at least 1.5 times as uncertain as
    # the clean one, in mean entropy and in mean standard deviation (noise, blur and texture are not ordered)
    for column in ("mean_entropy", "mean_pred_std"):
        assert float(clean[column]) > 0
        assert float(inverted[column]) >= 1.5 * float(clean[column]), (column, summary)


#: How much larger than the clean images' the classifier's mean spread must be on strong noise and on inversion.
MIN_SPREAD_RATIO = 1.15


def _corrupted_radiographs(image: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """An 8-bit radiograph phantom (H, W), clean and in three corrupted / out-of-distribution versions (float)."""
    x = image.astype(np.float32)
    return {
        "clean": x,
        "noise": x + rng.normal(0.0, 80.0, x.shape),
        "inverted": 255.0 - x,
        "texture": gaussian_filter(rng.uniform(0.0, 255.0, x.shape), 2.0),  # no chest at all
    }


@pytest.mark.slow
def test_classifier_spread_orders_noise_and_inversion_above_clean_but_not_a_chestless_texture(
    cxr_bundle, trained_cxr, tmp_path
):
    """On the phantom-trained DenseNet121 (``trained_cxr``), the TTA spread (``<label>_std``, averaged over labels
    and over 32 held-out images) is at least ``MIN_SPREAD_RATIO`` times the clean images' for strong noise and for
    inverted grey levels, and below it for a texture with no chest in it: the spread reacts to some corruptions, and
    is no detector of unusual inputs.
    """
    from PIL import Image

    dirs, settings = trained_cxr
    data = Path(dirs["dataset_dir"])
    names = (data / "test_list.txt").read_text().split()[:32]
    rng = np.random.default_rng(0)
    spread = {}
    for name in names:
        for kind, pixels in _corrupted_radiographs(np.asarray(Image.open(data / "images" / name)), rng).items():
            folder = tmp_path / "inputs" / kind
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / name)
    for kind in ("clean", "noise", "inverted", "texture"):
        run_configs(
            cxr_bundle,
            ["inference.json", "inference_uncertainty.json"],
            workflow_type="infer",
            ckpt_dir=dirs["ckpt_dir"],
            output_dir=str(tmp_path / kind),
            input=str(tmp_path / "inputs" / kind),
            uncertainty_samples=8,
            spatial_size=settings["spatial_size"],
            num_workers=0,
            progress_bar=False,
        )
        rows = _read_csv(tmp_path / kind / "predictions.csv")
        assert len(rows) == len(names)
        spread[kind] = float(np.mean([[float(v) for k, v in row.items() if k.endswith("_std")] for row in rows]))
    assert spread["clean"] > 0, spread
    assert min(spread["noise"], spread["inverted"]) >= MIN_SPREAD_RATIO * spread["clean"], spread
    assert spread["texture"] < spread["clean"], spread
