"""The SimCLR path end to end, from one small pretraining run: its features beat random ones under a linear probe,
its checkpoint starts the classifier bundle, and its embeddings are written with a t-SNE."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medzoo.weights import load_state_dict
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

#: The script's documented run (ResNetV2-50x1 at 64 x 64, 80 patients x 6 images, batch 32) cut to 1 epoch = 12 steps.
TINY_MARGIN_RUN = {"max_epochs": 1, "warmup_epochs": 0}
MIN_MARGIN = 0.05


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from benchmarks.ssl_linear_probe_margin import measure_margin

    workdir = tmp_path_factory.mktemp("simclr")
    return workdir, measure_margin(workdir, **TINY_MARGIN_RUN)


@pytest.mark.slow
def test_simclr_features_beat_random_features_under_a_linear_probe(pretrained):
    _, report = pretrained
    assert report["num_samples"] == 96
    assert report["margin"] > MIN_MARGIN, json.dumps(report, indent=1)
    assert report["mean_auroc"] > 0.75


@pytest.mark.slow
def test_pretraining_checkpoint_starts_the_classifier(pretrained, tmp_path):
    workdir, _ = pretrained
    simclr_ckpt = workdir / "models" / "model.pt"
    classifier = Bundle("cxr14_remedis_resnet50x1_classification")
    data = str(tmp_path / "data")  # the small sample of quick.json, not the pretraining run's larger one
    run_configs(classifier, ["sample_data.json", "quick.json"], dataset_dir=data)
    run_configs(
        classifier,
        ["train.json", "quick.json"],
        workflow_type="train",
        dataset_dir=data,
        ckpt_dir=str(tmp_path / "cls"),
        output_dir=str(tmp_path / "cls_eval"),
        pretrained_ckpt=str(simclr_ckpt),
        fine_tune_after_block=4,
        zero_init_logits=True,
    )
    simclr, fine_tuned = load_state_dict(simclr_ckpt), load_state_dict(tmp_path / "cls" / "model.pt")
    encoder_keys = [k for k in fine_tuned if not k.startswith("head.")]
    assert len(encoder_keys) == sum(k.startswith("encoder.") for k in simclr)
    for key in encoder_keys:  # head-only fine-tuning: the encoder is exactly the SimCLR encoder
        assert torch.equal(fine_tuned[key], simclr["encoder." + key]), key
    assert fine_tuned["head.fc.weight"].abs().sum() > 0  # the zero-initialised logits layer trained


@pytest.mark.slow
def test_embeddings_with_labels_and_a_corrupt_input(pretrained, tmp_path):
    workdir, _ = pretrained
    images = tmp_path / "images"
    images.mkdir()
    sources = sorted((workdir / "data" / "images").glob("*.png"))[:12]
    for src in sources:
        (images / src.name).write_bytes(src.read_bytes())
    (images / "corrupt.png").write_bytes(b"not a png")
    datalist = json.loads((workdir / "data" / "datalist.json").read_text())
    for split in ("training", "validation", "test"):
        for item in datalist[split]:
            item["image"] = str(images / Path(item["image"]).name)
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    run_configs(
        Bundle("cxr_simclr_pretraining"),
        ["inference.json"],
        workflow_type="infer",
        input=str(images),
        ckpt_path=str(workdir / "models" / "model.pt"),
        output_dir=str(tmp_path / "out"),
        spatial_size=[64, 64],
        labels_datalist=str(tmp_path / "datalist.json"),
        num_workers=0,
    )
    out = tmp_path / "out"
    embeddings = np.load(out / "embeddings.npy")
    rows = list(csv.DictReader((out / "embeddings.csv").read_text().splitlines()))
    assert embeddings.shape == (12, 2048) and np.isfinite(embeddings).all()
    assert [r["file"] for r in rows] == [str(images / s.name) for s in sources]
    assert all(r["Cardiomegaly"] in ("0", "1") for r in rows)
    assert (out / "tsne.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    errors = list(csv.reader((out / "errors.csv").read_text().splitlines()))
    assert len(errors) == 2 and errors[1][0].endswith("corrupt.png")
