"""Chest X-ray data: NIH and CheXpert datalist preparers, and the synthetic NIH-layout sample generator."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from PIL import Image

from medzoo.cxr.datasets import UNKNOWN, prepare_chexpert, prepare_nih
from medzoo.cxr.labels import CHEXNET_LABELS, CHEXPERT_COLUMNS, CHEXPERT_TO_CHEXNET
from medzoo.cxr.synthetic import NIH_CSV_HEADER, generate_nih_sample, new_patient, render_radiograph

SPLITS = ("training", "validation", "test")


def _label(*names: str) -> list[int]:
    return [int(name in names) for name in CHEXNET_LABELS]


def _patients(datalist: dict, key: str) -> set[str]:
    return {entry["patient_id"] for entry in datalist[key]}


def _write_nih(root: Path, findings: dict[str, str], train_val: list[str], test: list[str]) -> None:
    """A tiny NIH layout: ``findings`` maps image name (``<patient>_<follow-up>.png``) to its Finding Labels."""
    (root / "images").mkdir(parents=True)
    lines = [NIH_CSV_HEADER]
    for name, labels in findings.items():
        patient = int(name.split("_")[0])
        lines.append(f"{name},{labels},0,{patient},40,M,PA,2500,2048,0.143,0.143")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "images" / name)
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    (root / "train_val_list.txt").write_text("".join(f"{n}\n" for n in train_val))
    (root / "test_list.txt").write_text("".join(f"{n}\n" for n in test))


@pytest.fixture
def nih_dir(tmp_path: Path) -> Path:
    """10 train_val patients and 2 test patients, two images each; patient 1 has Cardiomegaly|Effusion."""
    train_val = [f"{p:08d}_{f:03d}.png" for p in range(1, 11) for f in range(2)]
    test = [f"{p:08d}_{f:03d}.png" for p in range(11, 13) for f in range(2)]
    findings = {name: "No Finding" for name in train_val + test}
    findings["00000001_000.png"] = "Cardiomegaly|Effusion"
    findings["00000011_001.png"] = "Hernia"
    _write_nih(tmp_path / "nih", findings, train_val, test)
    return tmp_path / "nih"


def test_prepare_nih_labels_and_patient_split(nih_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "datalist.json"
    datalist = prepare_nih(nih_dir, out, val_fraction=0.2, seed=3)

    assert datalist["labels"] == list(CHEXNET_LABELS)
    assert json.loads(out.read_text()) == datalist
    assert len(_patients(datalist, "validation")) == 2
    for a, b in [("training", "validation"), ("training", "test"), ("validation", "test")]:
        assert not _patients(datalist, a) & _patients(datalist, b), f"patient in both {a} and {b}"
    assert _patients(datalist, "test") == {"11", "12"}
    assert sum(len(datalist[k]) for k in SPLITS) == 24

    by_image = {e["image"]: e for k in SPLITS for e in datalist[k]}
    assert by_image["images/00000001_000.png"]["label"] == _label("Cardiomegaly", "Effusion")
    assert by_image["images/00000001_001.png"]["label"] == [0] * 14
    assert by_image["images/00000011_001.png"]["label"] == _label("Hernia")

    assert prepare_nih(nih_dir, val_fraction=0.2, seed=3) == datalist
    assert prepare_nih(nih_dir, val_fraction=0.2, seed=4)["validation"] != datalist["validation"]
    loaded = load_decathlon_datalist(out, data_list_key="training", base_dir=nih_dir)
    assert all(Path(e["image"]).is_file() for e in loaded)


def test_prepare_nih_missing_image(nih_dir: Path) -> None:
    (nih_dir / "images" / "00000004_001.png").unlink()
    with pytest.raises(FileNotFoundError, match="00000004_001.png"):
        prepare_nih(nih_dir)


def test_prepare_nih_unknown_finding(nih_dir: Path) -> None:
    csv_path = nih_dir / "Data_Entry_2017.csv"
    csv_path.write_text(csv_path.read_text().replace("Cardiomegaly|Effusion", "Cardiomegaly|Flu"))
    with pytest.raises(ValueError, match=r"00000001_000.png.*unknown finding 'Flu'"):
        prepare_nih(nih_dir)


def test_prepare_nih_bad_layouts(nih_dir: Path) -> None:
    (nih_dir / "test_list.txt").write_text("00000001_001.png\n")
    with pytest.raises(ValueError, match="patients in both"):
        prepare_nih(nih_dir)
    (nih_dir / "test_list.txt").write_text("")
    with pytest.raises(ValueError, match="no images for the 'test' split"):
        prepare_nih(nih_dir)
    (nih_dir / "train_val_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="train_val_list.txt"):
        prepare_nih(nih_dir)


def _write_chexpert(root: Path) -> None:
    """A tiny CheXpert-v1.0-small folder: 6 train patients with every kind of cell value, 1 valid patient."""
    folder = root / "CheXpert-v1.0-small"
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_COLUMNS]
    rows = {"train.csv": [], "valid.csv": []}
    for patient in range(1, 8):
        split = "valid" if patient == 7 else "train"
        for view, side in (("view1_frontal.jpg", "Frontal"), ("view2_lateral.jpg", "Lateral")):
            path = f"CheXpert-v1.0-small/{split}/patient{patient:05d}/study1/{view}"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(b"jpeg")
            values = {c: "" for c in CHEXPERT_COLUMNS}
            if patient == 1:  # 1.0, 0.0, -1.0 and blank in shared columns; Support Devices is not a CheXNet label
                values.update({"Cardiomegaly": "1.0", "Edema": "0.0", "Pleural Effusion": "-1.0", "Fracture": "1.0"})
            rows[f"{split}.csv"].append([path, "Male", "60", side, "AP", *values.values()])
    for name, content in rows.items():
        with open(folder / name, "w", newline="") as f:
            csv.writer(f).writerows([header, *content])


@pytest.mark.parametrize("uncertain, effusion", [("zeros", 0), ("ones", 1), ("ignore", UNKNOWN)])
def test_prepare_chexpert_uncertainty_policies(tmp_path: Path, uncertain: str, effusion: int) -> None:
    _write_chexpert(tmp_path)
    datalist = prepare_chexpert(tmp_path, tmp_path / "chexpert.json", uncertain=uncertain, val_fraction=0.2)

    expected = {name: UNKNOWN for name in CHEXNET_LABELS}
    expected.update({CHEXPERT_TO_CHEXNET[c]: 0 for c in CHEXPERT_TO_CHEXNET})  # blank -> 0
    expected.update({"Cardiomegaly": 1, "Edema": 0, "Effusion": effusion})
    entry = next(e for k in SPLITS for e in datalist[k] if e["image"].endswith("patient00001/study1/view1_frontal.jpg"))
    assert entry["label"] == [expected[name] for name in CHEXNET_LABELS]
    assert entry["patient_id"] == "patient00001"
    assert entry["image"] == "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"

    assert _patients(datalist, "test") == {"patient00007"}
    assert len(_patients(datalist, "validation")) == 1
    assert not _patients(datalist, "training") & _patients(datalist, "validation")
    for key in SPLITS:
        assert all(
            (tmp_path / e["image"]).is_file()
            for e in load_decathlon_datalist(tmp_path / "chexpert.json", data_list_key=key, base_dir=tmp_path)
        )


def test_prepare_chexpert_folder_itself_and_errors(tmp_path: Path) -> None:
    _write_chexpert(tmp_path)
    folder = tmp_path / "CheXpert-v1.0-small"
    datalist = prepare_chexpert(folder, frontal_only=True)
    assert datalist["test"][0]["image"] == "valid/patient00007/study1/view1_frontal.jpg"
    assert all("lateral" not in e["image"] for k in SPLITS for e in datalist[k])
    assert sum(len(datalist[k]) for k in SPLITS) == 7

    with pytest.raises(ValueError, match="uncertain must be one of"):
        prepare_chexpert(folder, uncertain="maybe")
    (folder / "train" / "patient00003" / "study1" / "view1_frontal.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="patient00003/study1/view1_frontal.jpg"):
        prepare_chexpert(tmp_path)


def test_generator_is_deterministic_and_in_nih_layout(tmp_path: Path) -> None:
    kwargs = {"num_patients": 5, "images_per_patient": 3, "image_size": 64, "test_fraction": 0.4}
    first = generate_nih_sample(tmp_path / "a", seed=7, **kwargs)
    second = generate_nih_sample(tmp_path / "b", seed=7, **kwargs)
    other = generate_nih_sample(tmp_path / "c", seed=8, **kwargs)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len(files) == 3 + 15
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert (first / "images/00000001_000.png").read_bytes() != (other / "images/00000001_000.png").read_bytes()

    assert (first / "Data_Entry_2017.csv").read_text().splitlines()[0] == (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
    )
    image = Image.open(first / "images/00000002_001.png")
    assert (image.mode, image.size) == ("L", (64, 64))
    datalist = prepare_nih(first, val_fraction=0.34)
    assert [len(_patients(datalist, k)) for k in SPLITS] == [2, 1, 2]
    assert [len(datalist[k]) for k in SPLITS] == [6, 3, 6]


def test_generator_cardiomegaly_widens_the_heart(tmp_path: Path) -> None:
    root = generate_nih_sample(tmp_path, num_patients=40, images_per_patient=4, image_size=64)
    entries = [e for k in SPLITS for e in prepare_nih(root)[k]]
    # beside the normal heart, inside the enlarged one: x 0.3..0.4, y -0.1..0.3 in [-1, 1] image coordinates
    flank = np.array([np.asarray(Image.open(root / e["image"]), np.float32)[28:42, 41:45].mean() for e in entries])
    positive = np.array([e["label"][CHEXNET_LABELS.index("Cardiomegaly")] == 1 for e in entries])
    assert 5 <= positive.sum() <= 0.3 * len(entries)
    difference = flank[positive].mean() - flank[~positive].mean()
    assert difference > 40, f"Cardiomegaly-positive minus negative mean intensity beside the heart: {difference:.1f}"


@pytest.mark.parametrize("finding", CHEXNET_LABELS)
def test_generator_draws_each_finding(finding: str) -> None:
    """Each finding changes some 8x8 block of the image by far more than the image-to-image noise does.

    The same patient and seed are drawn with and without the finding, so the geometry matches; redrawing only the
    noise (markings, grain, window) changes no block by more than about 25 grey levels.
    """
    changes = []
    for k in range(4):
        patient = new_patient(np.random.default_rng(k))
        normal = render_radiograph(np.random.default_rng(100 + k), 128, patient, set()).astype(np.float32)
        abnormal = render_radiograph(np.random.default_rng(100 + k), 128, patient, {finding}).astype(np.float32)
        diff = abnormal - normal
        diff -= np.median(diff)  # the window drawn after the finding differs
        changes.append(np.abs(diff.reshape(16, 8, 16, 8).mean(axis=(1, 3))).max())
    assert np.median(changes) > 40, f"{finding} changes the image too little: {np.round(changes, 1)}"
