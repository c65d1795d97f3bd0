"""medzoo.ssl: augmentations, NT-Xent, LARS and its schedule, encoders, fine-tuning, embeddings, linear probe."""

import itertools
import math

import numpy as np
import pytest
import torch

from medzoo.ssl import (
    LARS,
    NTXentLoss,
    RandResizedCropd,
    SimCLRNet,
    TwoViewBatch,
    TwoViewsd,
    bit_resnetv2,
    lars_param_groups,
    linear_probe_auroc,
    load_simclr_encoder,
    prepare_fine_tuning,
    projection_head,
    set_fine_tune_after_block,
    unlabelled_images,
)
from medzoo.zoo import Bundle

TINY = {"blocks_per_stage": [1, 1, 1, 1], "channels": [128, 128, 256, 256]}


# ---- NT-Xent ----------------------------------------------------------------------------------------------------


def ntxent_by_formula(z: torch.Tensor, t: float) -> float:
    """NT-Xent written out row by row: rows i and i + B are the two views of image i."""
    n = z.shape[0]
    half = n // 2
    z = z / z.norm(dim=1, keepdim=True)
    total = 0.0
    for k in range(n):
        positive = (k + half) % n
        numerator = math.exp(float(z[k] @ z[positive]) / t)
        denominator = sum(math.exp(float(z[k] @ z[m]) / t) for m in range(n) if m != k)
        total += -math.log(numerator / denominator)
    return total / n


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_ntxent_matches_the_formula(temperature):
    torch.manual_seed(0)
    z = torch.randn(10, 16, dtype=torch.float64)
    got = NTXentLoss(temperature)(z).item()
    assert got == pytest.approx(ntxent_by_formula(z, temperature), rel=1e-6)


def test_ntxent_is_low_when_views_agree_and_checks_its_input():
    torch.manual_seed(0)
    z = torch.randn(8, 32)
    agreeing = torch.cat([z, z + 0.01 * torch.randn_like(z)])
    unrelated = torch.cat([z, torch.randn_like(z)])
    loss = NTXentLoss(0.1)
    assert loss(agreeing) < loss(unrelated) - 1.0
    with pytest.raises(ValueError, match="2B, D"):
        loss(torch.randn(7, 4))
    with pytest.raises(ValueError, match="positive"):
        NTXentLoss(0.0)


def test_two_view_batch_stacks_view1_first():
    batch = {"view1": torch.zeros(3, 1, 8, 8), "view2": torch.ones(3, 1, 8, 8)}
    inputs, target = TwoViewBatch()(batch, "cpu")
    assert inputs.shape == (6, 1, 8, 8) and target is None
    assert inputs[:3].sum() == 0 and inputs[3:].min() == 1
    with pytest.raises(KeyError, match="view2"):
        TwoViewBatch()({"view1": torch.zeros(1)}, "cpu")


# ---- LARS and schedule ---------------------------------------------------------------------------------------------


def test_lars_param_groups_exclude_biases_and_norms():
    net = SimCLRNet(bit_resnetv2(**TINY), projection_layers=2)
    adapted, excluded = lars_param_groups(net, weight_decay=1e-4)
    names = {id(p): n for n, p in net.named_parameters()}
    excluded_names = {names[id(p)] for p in excluded["params"]}
    assert adapted["lars_adapt"] and adapted["weight_decay"] == 1e-4
    assert not excluded["lars_adapt"] and excluded["weight_decay"] == 0.0
    assert all(
        n.endswith(("bias", "norm.weight", "norm1.weight", "norm2.weight", "norm3.weight", "1.weight"))
        for n in excluded_names
    )
    assert "projection.1.weight" in excluded_names  # BatchNorm1d scale
    assert all(names[id(p)].endswith("weight") and p.ndim > 1 for p in adapted["params"])
    assert len(adapted["params"]) + len(excluded["params"]) == len(list(net.parameters()))


def test_lars_step_matches_the_update_rule():
    torch.manual_seed(0)
    w, b = torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(4))
    lr, wd, eta, mom = 0.5, 0.01, 0.001, 0.9
    opt = LARS(
        [
            {"params": [w], "weight_decay": wd, "lars_adapt": True},
            {"params": [b], "weight_decay": 0.0, "lars_adapt": False},
        ],
        lr=lr,
        momentum=mom,
        eta=eta,
    )
    w_ref, b_ref = w.detach().clone(), b.detach().clone()
    v_w, v_b = torch.zeros_like(w_ref), torch.zeros_like(b_ref)
    for step in range(2):
        gw, gb = torch.randn(4, 3), torch.randn(4)
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        g = gw + wd * w_ref
        trust = eta * w_ref.norm() / g.norm()
        v_w = mom * v_w + lr * trust * g
        w_ref = w_ref - v_w
        v_b = mom * v_b + lr * gb  # excluded: no weight decay, trust ratio 1
        b_ref = b_ref - v_b
        assert torch.allclose(w, w_ref, atol=1e-6), step
        assert torch.allclose(b, b_ref, atol=1e-6), step


def test_lars_leaves_excluded_parameters_without_decay():
    bias = torch.nn.Parameter(torch.ones(3))
    opt = LARS([{"params": [bias], "weight_decay": 0.0, "lars_adapt": False}], lr=1.0, weight_decay=0.5)
    bias.grad = torch.zeros(3)
    opt.step()
    assert torch.equal(bias.detach(), torch.ones(3))


def test_train_config_wires_lars_to_warmup_then_cosine():
    bundle = Bundle("cxr_simclr_pretraining")
    parser = bundle.parser("train.json", max_epochs=10, warmup_epochs=2, batch_size=4, accumulation_steps=4, **TINY)
    parser["train#dataloader"] = list(range(5))  # 5 iterations per epoch; only its length is used here
    scheduler = parser.get_parsed_content("lr_scheduler")
    optimizer = parser.get_parsed_content("optimizer")
    assert isinstance(optimizer, LARS) and len(optimizer.param_groups) == 2
    peak = 0.075 * math.sqrt(16)  # base lr x sqrt(effective batch)
    lrs = []
    for _ in range(50):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5 * peak) and lrs[10] == pytest.approx(peak)
    assert all(a < b for a, b in itertools.pairwise(lrs[:11]))  # linear warmup over 2 epochs
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))  # cosine decay
    assert lrs[30] == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 20 / 40)))
    assert lrs[-1] < 0.01 * peak


# ---- encoders and projection ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "width", "timm_name"), [(50, 1, "resnetv2_50x1_bit"), (152, 2, "resnetv2_152x2_bit")]
)
def test_bit_resnetv2_is_timm_bit_model(depth, width, timm_name):
    import timm

    with torch.device("meta"):
        ours = bit_resnetv2(depth, width, in_channels=1).state_dict()
        theirs = timm.create_model(timm_name, pretrained=False, num_classes=0, in_chans=1).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_encoder_embedding_and_projection_sizes():
    net = SimCLRNet(bit_resnetv2(50), projection_dim=128, projection_layers=3)
    x = torch.rand(2, 1, 64, 64)
    net.eval()
    with torch.no_grad():
        assert net.encoder(x).shape == (2, 2048)
        assert net(x).shape == (2, 128)
    for layers in (1, 2, 4):
        head = projection_head(2048, 128, layers)
        assert sum(isinstance(m, torch.nn.Linear) for m in head) == layers
        assert head[-1].out_features == 128
    with pytest.raises(ValueError, match="depth"):
        bit_resnetv2(34)


# ---- fine-tuning -------------------------------------------------------------------------------------------------


def expected_trainable(name: str, block: int) -> bool:
    if block == -1:
        return True
    if name.startswith("stem."):
        return False
    if name.startswith("stages."):
        return int(name.split(".")[1]) >= block
    if name.startswith("norm."):
        return block < 4
    return name.startswith("head.")


@pytest.mark.parametrize("block", [-1, 0, 1, 2, 3, 4])
def test_fine_tune_after_block_freezes_exactly_the_blocks_before_it(block):
    torch.manual_seed(0)
    net = set_fine_tune_after_block(bit_resnetv2(50, num_classes=3), block)
    net(torch.rand(2, 1, 32, 32)).sum().backward()
    for name, p in net.named_parameters():
        want = expected_trainable(name, block)
        assert p.requires_grad == want, name
        assert (p.grad is not None) == want, name
    if block == 4:
        assert {n for n, p in net.named_parameters() if p.requires_grad} == {"head.fc.weight", "head.fc.bias"}


def test_fine_tune_after_block_rejects_bad_values():
    with pytest.raises(ValueError, match="fine_tune_after_block"):
        set_fine_tune_after_block(bit_resnetv2(**TINY, num_classes=2), 5)


def test_classifier_loads_the_simclr_encoder_and_zeroes_its_logits(tmp_path):
    torch.manual_seed(0)
    simclr = SimCLRNet(bit_resnetv2(**TINY))
    ckpt = tmp_path / "simclr.pt"
    torch.save(simclr.state_dict(), ckpt)
    classifier = prepare_fine_tuning(
        bit_resnetv2(**TINY, num_classes=5), ckpt, fine_tune_after_block=2, zero_init_logits=True
    )
    encoder_state = simclr.encoder.state_dict()
    for key, value in classifier.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(value, encoder_state[key]), key
    classifier.eval()
    with torch.no_grad():
        assert torch.equal(classifier(torch.rand(2, 1, 32, 32)), torch.zeros(2, 5))


def test_simclr_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path):
    other = tmp_path / "other.pt"
    torch.save(SimCLRNet(bit_resnetv2(blocks_per_stage=[1, 1, 2, 1], channels=TINY["channels"])).state_dict(), other)
    with pytest.raises(ValueError, match=r"do not fit.*not in the network: stages\.2\.blocks\.1"):
        load_simclr_encoder(bit_resnetv2(**TINY, num_classes=2), other)
    wide = tmp_path / "wide.pt"
    torch.save(SimCLRNet(bit_resnetv2(**TINY, width_factor=2)).state_dict(), wide)
    with pytest.raises(ValueError, match="different shapes: norm.bias"):
        load_simclr_encoder(bit_resnetv2(**TINY, num_classes=2), wide)
    plain = tmp_path / "plain.pt"
    torch.save(bit_resnetv2(**TINY).state_dict(), plain)
    with pytest.raises(ValueError, match="no tensors under 'encoder.'"):
        load_simclr_encoder(bit_resnetv2(**TINY, num_classes=2), plain)
    with pytest.raises(FileNotFoundError, match="--pretrained_ckpt None"):
        prepare_fine_tuning(bit_resnetv2(**TINY, num_classes=2), tmp_path / "missing.pt")


def test_simclr_checkpoint_goes_through_the_safe_loader(tmp_path):
    ckpt = tmp_path / "pickled.pt"
    torch.save({"encoder.x": torch.zeros(1), "extra": object()}, ckpt)
    with pytest.raises(ValueError, match="not a safe checkpoint"):
        load_simclr_encoder(bit_resnetv2(**TINY), ckpt)


# ---- augmentations ------------------------------------------------------------------------------------------------


def test_rand_resized_crop_area_and_fallbacks():
    ramp = torch.arange(100.0).repeat(100, 1)[None]  # value = column index
    crop = RandResizedCropd("image", spatial_size=(20, 20), scale=(0.25, 0.25), ratio=(1.0, 1.0))
    crop.set_random_state(0)
    for _ in range(5):
        out = crop({"image": ramp})["image"]
        assert out.shape == (1, 20, 20)
        assert float(out.max() - out.min()) == pytest.approx(47.5, abs=0.6)  # a 50-pixel-wide window of the ramp
    whole = RandResizedCropd("image", spatial_size=(20, 20), prob=0.0)({"image": ramp})["image"]
    assert float(whole.max() - whole.min()) == pytest.approx(95.0, abs=0.6)
    with pytest.raises(ValueError, match="scale"):
        RandResizedCropd("image", spatial_size=(8, 8), scale=(0.0, 1.0))


def views_of(image: torch.Tensor, **overrides) -> dict:
    views = Bundle("cxr_simclr_pretraining").parser("train.json", spatial_size=[32, 32], **overrides)
    transform = views.get_parsed_content("train#views")
    transform.transform.set_random_state(3)
    return transform({"image": image, "other": 1})


def test_bundle_augmentations_make_two_different_views():
    torch.manual_seed(0)
    image = torch.rand(1, 48, 48)
    out = views_of(image)
    assert set(out) == {"view1", "view2", "other"}
    assert out["view1"].shape == out["view2"].shape == (1, 32, 32)
    assert not torch.allclose(out["view1"], out["view2"])
    assert 0.0 <= float(out["view1"].min()) and float(out["view1"].max()) <= 1.0


def test_augmentation_probabilities_are_configurable():
    off = {f"augment#{k}_prob": 0.0 for k in ("crop", "rotate", "elastic", "histeq", "brightness", "contrast", "blur")}
    image = torch.rand(1, 48, 48)
    out = views_of(image, **off)
    assert torch.allclose(out["view1"], out["view2"])  # nothing random is left
    only_rotation = {**off, "augment#rotate_prob": 1.0}
    out = views_of(image, **only_rotation)
    assert not torch.allclose(out["view1"], out["view2"])


def test_two_views_needs_its_source_key():
    with pytest.raises(KeyError, match="no 'image'"):
        TwoViewsd(lambda d: d)({"label": 1})


# ---- data, linear probe ------------------------------------------------------------------------------------------


def test_unlabelled_images_excludes_the_test_list(tmp_path):
    from PIL import Image

    for name in ("a.png", "b.png", "sub/c.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / name)
    (tmp_path / "test_list.txt").write_text("b.png\n")
    items = unlabelled_images(tmp_path, tmp_path / "test_list.txt")
    assert sorted(p["image"].split("/")[-1] for p in items) == ["a.png", "c.png"]
    with pytest.raises(FileNotFoundError, match="exclusion list"):
        unlabelled_images(tmp_path, tmp_path / "nope.txt")


def test_linear_probe_scores_informative_features_and_skips_unfittable_labels():
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 2, (200, 3)).astype(float), rng.integers(0, 2, (100, 3)).astype(float)
    y_train[:, 2] = 0  # no positive training example

    def features(y):
        return np.concatenate([y[:, :1] * 2.0 + rng.normal(0, 0.5, (len(y), 1)), rng.normal(0, 1, (len(y), 7))], axis=1)

    report = linear_probe_auroc(features(y_train), y_train, features(y_test), y_test, ["a", "b", "c"])
    assert report["per_class_auroc"]["a"] > 0.95
    assert 0.3 < report["per_class_auroc"]["b"] < 0.7
    assert report["per_class_auroc"]["c"] is None
    assert report["mean_auroc"] == pytest.approx(
        (report["per_class_auroc"]["a"] + report["per_class_auroc"]["b"]) / 2, abs=1e-6
    )
    with pytest.raises(ValueError, match="NaN"):
        bad = features(y_train)
        bad[0, 0] = np.nan
        linear_probe_auroc(bad, y_train, features(y_test), y_test, ["a", "b", "c"])


def test_cache_dataset_keeps_the_views_random():
    from monai.data import CacheDataset
    from monai.transforms import Compose, RandRotated

    views = TwoViewsd(Compose([RandRotated("image", range_x=1.0, prob=1.0)]))
    dataset = CacheDataset([{"image": torch.rand(1, 16, 16)}], transform=Compose([views]), progress=False)
    first, second = dataset[0], dataset[0]
    assert not torch.allclose(first["view1"], second["view1"])  # new views every epoch, not cached ones
