"""Knowledge distillation: the teacher is really used, refused when wrong, and the student learns from it."""

import json

import pytest
import torch
from monai.networks.nets import DenseNet121

from medzoo.distill import TeacherGuidedLoss, frozen_teacher
from medzoo.losses import DistillationLoss, MultiLabelLoss
from medzoo.workflows import run_configs
from medzoo.zoo import Bundle


@pytest.fixture(scope="module")
def student_bundle():
    return Bundle("cxr14_mobilenetv3_distilled_classification")


def test_loss_without_teacher_logits_is_an_error():
    loss = TeacherGuidedLoss(DistillationLoss(MultiLabelLoss()))
    with pytest.raises(RuntimeError, match="attach medzoo.distill.TeacherForward"):
        loss(torch.zeros(2, 14), torch.zeros(2, 14))
    loss.teacher_logits = torch.zeros(2, 14)
    loss(torch.zeros(2, 14), torch.zeros(2, 14))
    assert loss.teacher_logits is None  # consumed: the next batch cannot reuse it


def test_teacher_weights_must_exist_and_fit(tmp_path):
    from medzoo.errors import UserFileNotFoundError, UserValueError

    with pytest.raises(UserFileNotFoundError, match="teacher weights not found.*--teacher_ckpt"):
        frozen_teacher(DenseNet121(2, 1, 14), tmp_path / "missing.pt")
    torch.save(DenseNet121(2, 1, 3).state_dict(), tmp_path / "three_labels.pt")
    with pytest.raises(UserValueError, match="teacher weights: weights in .* do not fit the DenseNet121 network"):
        frozen_teacher(DenseNet121(2, 1, 14), tmp_path / "three_labels.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(UserValueError, match="teacher weights: .*empty.pt is empty"):
        frozen_teacher(DenseNet121(2, 1, 14), tmp_path / "empty.pt")
    torch.save(DenseNet121(2, 1, 14).state_dict(), tmp_path / "ok.pt")
    teacher = frozen_teacher(DenseNet121(2, 1, 14), tmp_path / "ok.pt")
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.slow
def test_student_learns_from_a_trained_teacher(student_bundle, trained_cxr, tmp_path):
    """The MobileNetV3 student distilled from the (briefly trained) DenseNet121 beats chance clearly on held-out
    patients, and the run really consulted the teacher. At this scale (64 px, 4 epochs) it measured 0.70 mean AUROC
    (the teacher reaches >= 0.8 in test_short_training_learns): a small student learns more slowly here."""
    teacher_dirs, settings = trained_cxr
    dirs = {
        "dataset_dir": teacher_dirs["dataset_dir"],
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
    }
    teacher_ckpt = f"{teacher_dirs['ckpt_dir']}/model.pt"
    workflow = run_configs(
        student_bundle, ["train.json"], workflow_type="train", teacher_ckpt=teacher_ckpt, **settings, **dirs
    )
    teacher = workflow.parser.get_parsed_content("teacher")
    reference = frozen_teacher(DenseNet121(2, 1, 14), teacher_ckpt)
    x = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(teacher(x), reference(x))  # the trained teacher, untouched by the student's training
    run_configs(student_bundle, ["train.json", "evaluate.json"], workflow_type="eval", **settings, **dirs)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["mean_auroc"] >= 0.65, metrics
