"""Image + clinical fusion: the clinical fields in the preparers, their encoding, the phantoms whose findings depend on
them, the fusion network's learning against an image-only network, and export with two inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medzoo.cxr.clinical import CLINICAL_FEATURES, ClinicalVectord, encode_clinical, list_clinical_inputs
from medzoo.cxr.clinical_phantoms import generate_nih_clinical_sample
from medzoo.cxr.datasets import prepare_chexpert, prepare_nih
from medzoo.cxr.labels import CHEXNET_LABELS, CHEXPERT_COLUMNS
from medzoo.cxr.synthetic import NIH_CSV_HEADER
from medzoo.errors import UserValueError
from medzoo.networks.fusion import FUSIONS, ClinicalFusionClassifier
from medzoo.zoo import Bundle

BUNDLE = "cxr14_densenet121_clinical_fusion_classification"
#: Held-out Cardiomegaly AUROC by which each fusion must beat the image-only network in the learning test.
MARGIN = 0.08


def _write_nih(root: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """A tiny NIH layout; ``rows`` are (image name, Patient Age, Patient Gender, View Position) of ``No Finding``
    images; the last patient is the test list."""
    (root / "images").mkdir(parents=True)
    lines = [NIH_CSV_HEADER]
    for name, age, sex, view in rows:
        lines.append(f"{name},No Finding,0,{int(name[:8])},{age},{sex},{view},2500,2048,0.143,0.143")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / name)
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    last = rows[-1][0][:8]
    (root / "train_val_list.txt").write_text("".join(f"{r[0]}\n" for r in rows if not r[0].startswith(last)))
    (root / "test_list.txt").write_text("".join(f"{r[0]}\n" for r in rows if r[0].startswith(last)))


NIH_ROWS = [
    ("00000001_000.png", "58", "F", "PA"),
    ("00000002_000.png", "067Y", "M", "AP"),
    ("00000003_000.png", "", "", "PA"),  # blank age and sex
    ("00000004_000.png", "412", "M", ""),  # impossible age (as in the real file) and blank view
    ("00000005_000.png", "30", "F", "AP"),
]


def test_prepare_nih_carries_the_clinical_fields_with_missing_values(tmp_path):
    _write_nih(tmp_path, NIH_ROWS)
    datalist = prepare_nih(tmp_path, tmp_path / "datalist.json", val_fraction=0.0, clinical=True)
    entries = {e["image"]: e for e in datalist["training"] + datalist["test"]}
    fields = {name: tuple(entries[f"images/{name}"][f] for f in ("age", "sex", "view")) for name, *_ in NIH_ROWS}
    assert fields == {
        "00000001_000.png": (58.0, "F", "PA"),
        "00000002_000.png": (67.0, "M", "AP"),
        "00000003_000.png": (None, None, "PA"),
        "00000004_000.png": (None, "M", None),
        "00000005_000.png": (30.0, "F", "AP"),
    }
    written = json.loads((tmp_path / "datalist.json").read_text())
    assert written["training"][2]["age"] is None  # null in the JSON, not 0
    without = prepare_nih(tmp_path, val_fraction=0.0)  # the image-only bundles' datalists are unchanged
    assert "age" not in without["training"][0]


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("age", "abc", r"Data_Entry_2017.csv line 3 \(00000002_000.png\), Patient Age: age 'abc' is not a number"),
        ("sex", "X", r"line 3 \(00000002_000.png\), Patient Gender: sex 'X' is not one of"),
        ("view", "OBLIQUE", r"line 3 \(00000002_000.png\), View Position: view 'OBLIQUE' is not one of"),
    ],
)
def test_prepare_nih_names_file_and_row_of_a_malformed_field(tmp_path, column, value, message):
    rows = [list(r) for r in NIH_ROWS]
    rows[1][{"age": 1, "sex": 2, "view": 3}[column]] = value
    _write_nih(tmp_path, [tuple(r) for r in rows])
    with pytest.raises(UserValueError, match=message) as error:
        prepare_nih(tmp_path, val_fraction=0.0, clinical=True)
    assert "\n" not in str(error.value)


def test_prepare_nih_refuses_a_csv_without_the_clinical_columns(tmp_path):
    _write_nih(tmp_path, NIH_ROWS)
    csv_file = tmp_path / "Data_Entry_2017.csv"
    csv_file.write_text(csv_file.read_text().replace("View Position", "Projection"))
    with pytest.raises(ValueError, match=r"lacks the columns \['View Position'\]"):
        prepare_nih(tmp_path, val_fraction=0.0, clinical=True)


def _write_chexpert(root: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """CheXpert-v1.0-small with one image per (Sex, Age, Frontal/Lateral, AP/PA) row, patient i; the last is valid."""
    folder = root / "CheXpert-v1.0-small"
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_COLUMNS]
    tables: dict[str, list] = {"train.csv": [], "valid.csv": []}
    for i, row in enumerate(rows, 1):
        split = "valid" if i == len(rows) else "train"
        path = f"CheXpert-v1.0-small/{split}/patient{i:05d}/study1/view1.jpg"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"jpeg")
        tables[f"{split}.csv"].append([path, *row, *([""] * len(CHEXPERT_COLUMNS))])
    for name, content in tables.items():
        with open(folder / name, "w", newline="") as f:
            csv.writer(f).writerows([header, *content])


def test_prepare_chexpert_carries_the_clinical_fields(tmp_path):
    rows = [
        ("Female", "71", "Frontal", "AP"),
        ("Male", "44", "Lateral", ""),
        ("Unknown", "", "Frontal", ""),  # unknown sex, blank age, frontal without AP/PA
        ("Male", "50", "Frontal", "PA"),
    ]
    _write_chexpert(tmp_path, rows)
    datalist = prepare_chexpert(tmp_path, val_fraction=0.0, clinical=True)
    fields = [tuple(e[f] for f in ("age", "sex", "view")) for e in datalist["training"] + datalist["test"]]
    assert fields == [(71.0, "F", "AP"), (44.0, "M", "LATERAL"), (None, None, None), (50.0, "M", "PA")]
    rows[1] = ("Male", "44", "Sideways", "")
    _write_chexpert(tmp_path / "bad", rows)
    with pytest.raises(UserValueError, match=r"train.csv line 3, Frontal/Lateral: 'Sideways' is not Frontal"):
        prepare_chexpert(tmp_path / "bad", val_fraction=0.0, clinical=True)


def test_encoding_marks_missing_values_with_their_indicator():
    assert len(CLINICAL_FEATURES) == 8
    assert encode_clinical(58.0, "F", "PA") == [0.58, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert encode_clinical(None, None, None) == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    item = ClinicalVectord()({"image": "a.png", "age": "", "sex": "M", "view": "AP"})
    assert item["clinical"].tolist() == [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0] and "age" not in item
    with pytest.raises(UserValueError, match=r"a.png: no clinical field \['view'\]"):
        ClinicalVectord()({"image": "a.png", "age": 1, "sex": "M"})


def test_inference_inputs_read_a_csv_and_refuse_a_missing_column(tmp_path):
    (tmp_path / "in.csv").write_text("image,age,sex,view\na.png,58,F,PA\nb.png,,,\n")
    rows = list_clinical_inputs(tmp_path / "in.csv")
    assert rows == [
        {"image": str(tmp_path / "a.png"), "age": "58", "sex": "F", "view": "PA"},
        {"image": str(tmp_path / "b.png"), "age": "", "sex": "", "view": ""},
    ]
    (tmp_path / "bad.csv").write_text("image,age,sex\na.png,58,F\n")
    with pytest.raises(UserValueError, match=r"bad.csv: no column \['view'\]; the CSV needs the columns"):
        list_clinical_inputs(tmp_path / "bad.csv")


def test_phantom_cardiomegaly_depends_on_the_view(tmp_path):
    """An AP view magnifies the heart as Cardiomegaly widens it: the normal AP heart is as wide as the enlarged PA
    one, both clearly wider than the normal PA heart (width: bright pixels of the heart's row)."""
    root = generate_nih_clinical_sample(
        tmp_path, num_patients=30, images_per_patient=4, image_size=64, findings=["Cardiomegaly"],
        finding_probability=0.5, normal_probability=0.0, missing_probability=0.0,
    )  # fmt: skip
    widths: dict[tuple[str, bool], list[float]] = {}
    with open(root / "Data_Entry_2017.csv", newline="") as f:
        for row in csv.DictReader(f):
            image = np.asarray(Image.open(root / "images" / row["Image Index"]), dtype=np.float32)
            band = image[36:40].mean(axis=0)
            width = float((band > 0.5 * (band.max() + np.median(band))).sum())
            widths.setdefault((row["View Position"], row["Finding Labels"] == "Cardiomegaly"), []).append(width)
    mean = {k: float(np.mean(v)) for k, v in widths.items()}
    assert mean[("PA", False)] + 2 < mean[("AP", False)] < mean[("AP", True)]
    assert abs(mean[("AP", False)] - mean[("PA", True)]) < 0.5 * (mean[("PA", True)] - mean[("PA", False)])


SMALL_DENSENET = {"init_features": 16, "growth_rate": 8, "block_config": (2, 2, 2)}


def _tensors(root: Path, entries: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images [N, 1, H, W] in [0, 1], clinical vectors [N, 8], Cardiomegaly labels [N]."""
    images = np.stack([np.asarray(Image.open(root / e["image"]), dtype=np.float32) / 255.0 for e in entries])
    clinical = torch.stack([ClinicalVectord()(e)["clinical"] for e in entries])
    labels = torch.tensor([float(e["label"][CHEXNET_LABELS.index("Cardiomegaly")]) for e in entries])
    return torch.from_numpy(images)[:, None], clinical, labels


def _train_and_score(network, fused: bool, train, test, epochs: int) -> float:
    """Train with Adam on BCE (seeded), return the held-out AUROC."""
    from sklearn.metrics import roc_auc_score

    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(network.parameters(), 2e-3)
    for _ in range(epochs):
        network.train()
        for idx in torch.randperm(len(train[0]), generator=generator).split(32):
            logits = network(train[0][idx], train[1][idx]) if fused else network(train[0][idx])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], train[2][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    network.eval()
    with torch.no_grad():
        logits = network(test[0], test[1]) if fused else network(test[0])
    return float(roc_auc_score(test[2].numpy(), logits[:, 0].numpy()))


@pytest.mark.parametrize(
    "argument", ["finding_probability", "normal_probability", "ap_probability", "missing_probability"]
)
def test_phantom_refuses_a_probability_outside_0_1_before_writing(tmp_path, argument):
    with pytest.raises(ValueError, match=f"{argument} must be in \\[0, 1\\], got 1.5"):
        generate_nih_clinical_sample(tmp_path / "sample", num_patients=2, images_per_patient=1, **{argument: 1.5})
    assert not (tmp_path / "sample").exists()


@pytest.mark.slow
def test_fusion_beats_the_image_only_network_on_held_out_patients(tmp_path):
    """Phantoms with Cardiomegaly only, half the images AP: from the image alone a normal AP heart and an enlarged PA
    heart look alike. The same small DenseNet, seed and steps, with and without the clinical input: each fusion's
    Cardiomegaly AUROC on the held-out patients beats the image-only one by ``MARGIN``."""
    from monai.networks.nets import DenseNet

    root = generate_nih_clinical_sample(
        tmp_path, num_patients=160, images_per_patient=4, image_size=32, seed=0, test_fraction=0.25,
        findings=["Cardiomegaly"], finding_probability=0.5, normal_probability=0.0, ap_probability=0.5,
    )  # fmt: skip
    datalist = prepare_nih(root, val_fraction=0.0, clinical=True)
    train, test = _tensors(root, datalist["training"]), _tensors(root, datalist["test"])
    assert not {e["patient_id"] for e in datalist["training"]} & {e["patient_id"] for e in datalist["test"]}
    torch.manual_seed(0)
    image_only = _train_and_score(DenseNet(2, 1, 1, **SMALL_DENSENET), False, train, test, epochs=20)
    for fusion in FUSIONS:
        torch.manual_seed(0)
        network = ClinicalFusionClassifier(out_channels=1, fusion=fusion, embed_dim=32, **SMALL_DENSENET)
        fused = _train_and_score(network, True, train, test, epochs=20)
        assert fused >= image_only + MARGIN, f"{fusion}: AUROC {fused:.3f} vs image-only {image_only:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "ts"])
@pytest.mark.parametrize("override", ["cross_attention.json"])
def test_export_with_both_inputs_matches_eager(tmp_path, fmt, override):
    """The bundle's network with cross-attention fusion (the default, concat, is exported by the generic tests:
    ``test_bundles.py``, ``test_export_compress.py``) exported with its two inputs (image, clinical) gives the eager
    outputs on the same random inputs, and the ONNX graph names both inputs."""
    from medzoo.export import export_bundle
    from medzoo.weights import write_init_weights

    bundle = Bundle(BUNDLE)
    if override:  # a copy of the bundle whose inference.json has the override merged
        import shutil

        copy = Path(shutil.copytree(bundle.root / "configs", tmp_path / BUNDLE / "configs"))
        config = json.loads((copy / "inference.json").read_text())
        config.update(json.loads((copy / override).read_text()))
        (copy / "inference.json").write_text(json.dumps(config))
        bundle = Bundle(copy.parent)
    weights = write_init_weights(bundle, tmp_path / "model.pt")
    report = export_bundle(bundle, fmt, weights, output=tmp_path / f"model.{fmt}")
    assert report["max_abs_diff"] <= 1e-3 * max(1.0, report["output_scale"])
    if fmt == "onnx":
        import onnx

        assert [i.name for i in onnx.load(str(tmp_path / "model.onnx")).graph.input] == ["image", "clinical"]
