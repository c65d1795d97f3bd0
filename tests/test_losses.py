"""Each loss against a direct computation of its formula (written out element by element where it is short)."""

import math

import pytest
import torch
from monai.losses import DiceCELoss, FocalLoss

from medzoo.losses import DistillationLoss, HeteroscedasticLoss, MultiLabelLoss


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_heteroscedastic_loss_is_the_formula():
    pred, target, s = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 1.0, 0.5]), torch.tensor([0.0, 1.0, -1.0])
    expected_l2 = [
        0.5 * math.exp(-si) * (p - t) ** 2 + 0.5 * si for p, t, si in zip(pred.tolist(), target.tolist(), s.tolist())
    ]
    expected_l1 = [
        0.5 * math.exp(-si) * abs(p - t) + 0.5 * si for p, t, si in zip(pred.tolist(), target.tolist(), s.tolist())
    ]
    torch.testing.assert_close(HeteroscedasticLoss(reduction="none")(pred, target, s), torch.tensor(expected_l2))
    assert HeteroscedasticLoss()(pred, target, s).item() == pytest.approx(sum(expected_l2) / 3)
    assert HeteroscedasticLoss("l1", "sum")(pred, target, s).item() == pytest.approx(sum(expected_l1))


def test_heteroscedastic_loss_learns_the_error_scale():
    """Minimising over s alone gives s = log(err): the predicted variance matches the squared error."""
    err = torch.tensor([0.01, 1.0, 9.0])
    s = torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.Adam([s], lr=0.1)
    for _ in range(500):
        optimizer.zero_grad()
        HeteroscedasticLoss(reduction="sum")(err.sqrt(), torch.zeros(3), s).backward()
        optimizer.step()
    torch.testing.assert_close(s.detach(), err.log(), atol=0.02, rtol=0)


def test_heteroscedastic_loss_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="must have the same shape"):
        HeteroscedasticLoss()(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1))


def test_multilabel_distillation_is_the_formula():
    student, teacher = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.5, 1.5]])
    target = torch.tensor([[1.0, 0.0]])
    t, alpha = 2.0, 0.25
    soft = 0.0
    for zs, zt in zip(student[0].tolist(), teacher[0].tolist()):
        q, p = _sigmoid(zt / t), _sigmoid(zs / t)
        soft += -(q * math.log(p) + (1 - q) * math.log(1 - p))
    soft = t * t * soft / 2
    hard = (
        sum(
            -(y * math.log(_sigmoid(z)) + (1 - y) * math.log(1 - _sigmoid(z)))
            for z, y in zip(student[0].tolist(), target[0].tolist())
        )
        / 2
    )
    loss = DistillationLoss(MultiLabelLoss(), temperature=t, alpha=alpha)(student, teacher, target)
    assert loss.item() == pytest.approx(alpha * soft + (1 - alpha) * hard, rel=1e-5)


def test_multiclass_distillation_is_the_formula_and_zero_for_a_matching_student():
    student, teacher = torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    t = 3.0
    q = torch.softmax(teacher / t, 1)[0].tolist()
    p = torch.softmax(student / t, 1)[0].tolist()
    kl = sum(qi * math.log(qi / pi) for qi, pi in zip(q, p))
    kd = DistillationLoss(torch.nn.CrossEntropyLoss(), temperature=t, alpha=1.0, mode="multiclass")
    assert kd(student, teacher, torch.tensor([1])).item() == pytest.approx(t * t * kl, rel=1e-5)
    assert kd(teacher, teacher, torch.tensor([1])).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_gradient_reaches_only_the_student():
    student, teacher = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    DistillationLoss(MultiLabelLoss(), alpha=0.5)(student, teacher, torch.ones(4, 3)).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None


@pytest.mark.parametrize(
    "kwargs, message", [({"temperature": 0}, "temperature"), ({"alpha": 1.5}, "alpha"), ({"mode": "ranking"}, "mode")]
)
def test_distillation_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DistillationLoss(MultiLabelLoss(), **kwargs)


def test_monai_sigmoid_focal_loss_with_alpha_is_the_formula():
    """The multi-label focal loss the bundles take from MONAI: -a_t (1 - p_t)^gamma log(p_t), averaged."""
    logits, target = torch.tensor([[1.5, -0.5, 0.2]]), torch.tensor([[1.0, 0.0, 0.0]])
    gamma, alpha = 2.0, 0.25
    terms = []
    for z, y in zip(logits[0].tolist(), target[0].tolist()):
        p_t = _sigmoid(z) if y == 1 else 1 - _sigmoid(z)
        a_t = alpha if y == 1 else 1 - alpha
        terms.append(-a_t * (1 - p_t) ** gamma * math.log(p_t))
    loss = FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False)(logits, target)
    assert loss.item() == pytest.approx(sum(terms) / 3, rel=1e-5)


def test_monai_softmax_focal_loss_is_the_formula():
    """Multi-class focal loss: -(1 - p_y)^gamma log(p_y) for the true class y; MONAI's "sum" averages it over the
    class channel (the other classes contribute 0) and sums over samples and positions."""
    logits, label = torch.tensor([[2.0, 0.5, -1.0]]), 1
    gamma = 2.0
    p = torch.softmax(logits, 1)[0].tolist()
    expected = -((1 - p[label]) ** gamma) * math.log(p[label])
    target = torch.nn.functional.one_hot(torch.tensor([label]), 3).float()
    loss = FocalLoss(gamma=gamma, use_softmax=True, reduction="sum")(logits, target)
    assert loss.item() == pytest.approx(expected / 3, rel=1e-5)


def test_monai_weighted_dice_ce_is_the_formula():
    """Segmentation loss the bundles take from MONAI: lambda_dice * (1 - soft Dice) + lambda_ce * CE."""
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 4, 4)
    label = torch.randint(0, 2, (1, 1, 4, 4))
    onehot = torch.nn.functional.one_hot(label[:, 0], 2).permute(0, 3, 1, 2).float()
    prob = torch.softmax(logits, 1)
    dice = torch.stack(
        [
            1 - (2 * (prob[:, c] * onehot[:, c]).sum() + 1e-5) / (prob[:, c].sum() + onehot[:, c].sum() + 1e-5)
            for c in range(2)
        ]
    ).mean()
    ce = torch.nn.functional.cross_entropy(logits, label[:, 0])
    loss = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=0.3, lambda_ce=0.7)(logits, label)
    assert loss.item() == pytest.approx(0.3 * dice.item() + 0.7 * ce.item(), rel=1e-5)
