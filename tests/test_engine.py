"""Training engine and networks."""

import math

import numpy as np
import pytest
import torch

from jal_plugins import create_loss, create_model
from jal_plugins.engine import DeviceData, Trainer, TrainConfig
from jal_plugins.sampler import augment, draw_augmentation


@pytest.mark.parametrize(
    "name, k, c, params, count",
    [("cnn8", 10, 3, {}, 1_639_794), ("cnn4", 10, 1, {}, 422_090), ("resnet34", 100, 3, {}, 21_328_292),
     ("cnn8", 10, 3, {"width": 0.25}, 103_881)],
)  # fmt: skip
def test_parameter_counts_match_the_spec(name, k, c, params, count):
    model = create_model(name, k, c, **params)
    assert sum(p.numel() for p in model.parameters()) == count


def test_cnn8_runs_channels_last():
    model = create_model("cnn8", 10, 3, width=0.25).eval()
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    assert model.to(memory_format=torch.channels_last)(x).shape == (2, 10)


def test_cosine_schedule_per_epoch():
    cfg = TrainConfig(epochs=4, lr=0.1)
    assert [cfg.lr_at(e) for e in range(4)] == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])


def test_augment_crops_with_zero_padding_and_flips():
    x = torch.full((256, 1, 8, 8), 200, dtype=torch.uint8)
    out = augment(x, draw_augmentation("crop-flip", 256, torch.Generator().manual_seed(0), "cpu"))
    assert out.shape == (256, 1, 8, 8)
    assert set(out.unique().tolist()) == {0.0, 200.0}  # padding enters as 0 before normalisation
    assert (out == 200).all(1).all(1).all(1).any()  # some crops at offset 4 keep every pixel
    ramp = torch.arange(8, dtype=torch.uint8).repeat(1, 1, 8, 1).expand(512, 1, 8, 8)
    flipped = augment(ramp, draw_augmentation("crop-flip", 512, torch.Generator().manual_seed(1), "cpu"))
    rows = flipped[:, 0, 4]
    assert ((rows[:, 1:] - rows[:, :-1]) < 0).any(), "no flipped sample among 512"


def test_l1_is_folded_into_the_gradient_before_the_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    loss = create_loss("ce", 3, reduction="none")
    grads = torch.autograd.grad(loss(model(x), y).mean(), list(model.parameters()))
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, momentum=0.0, l1=0.01, clip=None)
    Trainer(model, loss, cfg, "cpu").train_epoch(DeviceData(x.numpy(), y.numpy(), "cpu"))
    for p, b, g in zip(model.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), b - 0.1 * (g + 0.01 * b.sign()))


def test_sample_weights_zero_out_samples():
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = torch.randint(0, 2, (64,))
    w = torch.ones(64)
    w[32:] = 0
    results = []
    for xs, ys, ws in ((x, y, w), (x[:32], y[:32], None)):
        model = torch.nn.Linear(5, 2)
        model.load_state_dict({"weight": torch.zeros(2, 5), "bias": torch.zeros(2)})
        cfg = TrainConfig(epochs=1, batch_size=64, lr=0.1, momentum=0.0, clip=None)
        data = DeviceData(xs.numpy(), ys.numpy(), "cpu", sample_weight=ws)
        Trainer(model, create_loss("ce", 2, reduction="none"), cfg, "cpu").train_epoch(data)
        results.append(model.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1])


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="epochs=0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(augment="mixup")
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_dict({"bogus": 1})


def test_trainer_keeps_last_partial_batch_and_learns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(130, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = create_model("mlp", 2, 6)
    trainer = Trainer(model, create_loss("jal-ce", 2, reduction="none"), TrainConfig(epochs=30, batch_size=64, lr=0.1), "cpu")
    data = DeviceData(x, y, "cpu")
    for _ in range(30):
        stats = trainer.train_epoch(data)
    assert trainer.epoch == 30 and trainer.accuracy(data) > 0.9 and stats["train_accuracy"] > 0.8


def test_a_last_batch_of_one_row_joins_the_one_before_so_batch_norm_can_train():
    from jal_plugins.sampler import EpochSampler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(129, 6)).astype(np.float32)  # 2 x 64 + 1: a pruning method may keep any count
    y = (x[:, 0] > 0).astype(np.int64)
    data = DeviceData(x, y, "cpu")
    seen = [idx for idx, *_ in EpochSampler([0], 64, "none").batches(0, data)]
    assert [i.shape[1] for i in seen] == [64, 65]
    assert sorted(torch.cat(seen, 1)[0].tolist()) == list(range(129))
    longer = DeviceData(np.r_[x, x[:1]], np.r_[y, y[:1]], "cpu")
    assert [idx.shape[1] for idx, *_ in EpochSampler([0], 64, "none").batches(0, longer)] == [64, 64, 2]
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    trainer = Trainer(model, create_loss("ce", 2, reduction="none"), TrainConfig(epochs=2, batch_size=64, lr=0.1), "cpu")
    assert trainer.train_epoch(data)["train_loss"] > 0
