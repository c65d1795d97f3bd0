"""The SimCLR path end to end: pretraining writes a checkpoint the classifier fine-tunes from, embeddings are written,
and the pretrained features beat random ones under a linear probe."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medzoo.weights import load_state_dict
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


@pytest.mark.slow
def test_pretraining_checkpoint_starts_the_classifier_and_embeddings_are_written(tmp_path):
    pretraining, classifier = Bundle("cxr_simclr_pretraining"), Bundle("cxr14_remedis_resnet50x1_classification")
    data = str(tmp_path / "data")
    run_configs(pretraining, ["sample_data.json", "quick.json"], dataset_dir=data)
    simclr_dirs = {"dataset_dir": data, "ckpt_dir": str(tmp_path / "simclr"), "output_dir": str(tmp_path / "simclr_eval")}
    run_configs(pretraining, ["train.json", "quick.json"], workflow_type="train", **simclr_dirs)
    simclr_ckpt = tmp_path / "simclr" / "model.pt"

    run_configs(
        classifier, ["train.json", "quick.json"], workflow_type="train", dataset_dir=data, ckpt_dir=str(tmp_path / "cls"),
        output_dir=str(tmp_path / "cls_eval"), pretrained_ckpt=str(simclr_ckpt), fine_tune_after_block=4, zero_init_logits=True,
    )
    simclr, fine_tuned = load_state_dict(simclr_ckpt), load_state_dict(tmp_path / "cls" / "model.pt")
    encoder_keys = [k for k in fine_tuned if not k.startswith("head.")]
    assert len(encoder_keys) == sum(k.startswith("encoder.") for k in simclr)
    for key in encoder_keys:  # head-only fine-tuning: the encoder is exactly the SimCLR encoder
        assert torch.equal(fine_tuned[key], simclr["encoder." + key]), key
    assert fine_tuned["head.fc.weight"].abs().sum() > 0  # the zero-initialised logits layer trained

    # embeddings of every image plus a corrupt one, coloured t-SNE from the datalist's labels
    images = Path(data) / "images"
    (images / "corrupt.png").write_bytes(b"not a png")
    run_configs(pretraining, ["inference.json", "quick.json"], workflow_type="infer", **simclr_dirs, ckpt_path=str(simclr_ckpt))
    out = tmp_path / "simclr_eval"
    embeddings = np.load(out / "embeddings.npy")
    rows = list(csv.DictReader(open(out / "embeddings.csv")))
    num_images = len(list(images.glob("*.png"))) - 1
    assert embeddings.shape == (num_images, 2048) and np.isfinite(embeddings).all()
    assert [r["row"] for r in rows] == [str(i) for i in range(num_images)]
    assert {"Cardiomegaly", "Hernia"} <= set(rows[0]) and rows[0]["Cardiomegaly"] in ("0", "1")
    assert (out / "tsne.png").stat().st_size > 0
    errors = list(csv.reader(open(out / "errors.csv")))
    assert len(errors) == 2 and errors[1][0].endswith("corrupt.png")


@pytest.mark.slow
def test_simclr_features_beat_random_features_under_a_linear_probe(tmp_path):
    from ssl_linear_probe_margin import measure_margin

    report = measure_margin(tmp_path, **TINY_MARGIN_RUN)
    assert report["margin"] > MIN_MARGIN, json.dumps(report, indent=1)
