"""DivideMix and ELR: their pieces against hand computations, their presets, bad values, and real runs
through the runner that are killed mid-run and resumed."""

import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from jal_plugins import create_loss, list_methods
from jal_plugins.job import Job, validate
from jal_plugins.losses.base import expected_loss
from jal_plugins.methods.dividemix import clean_probability, mix_weight, mixup, refine, sharpen
from jal_plugins.methods.elr import elr_regulariser
from jal_plugins.results import read_checkpoint, read_records


def test_both_methods_are_registered():
    assert {"dividemix", "elr"} <= set(list_methods())


def test_expected_loss_is_soft_cross_entropy_for_ce_and_linear_in_the_targets_for_any_loss():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, generator=gen)
    target = torch.softmax(torch.randn(6, 5, generator=gen), 1)
    ce = create_loss("ce", 5, reduction="none")
    closed = -(target * torch.log_softmax(logits, 1)).sum(1)
    torch.testing.assert_close(expected_loss(ce, logits, target), closed)
    # the class-by-class evaluation (any loss without a closed form) agrees with CE's closed form
    torch.testing.assert_close(expected_loss(lambda z, y: ce(z, y), logits, target), closed)
    jal = create_loss("jal-ce", 5, reduction="none", a=5.0)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    onehot = torch.nn.functional.one_hot(labels, 5).float()
    torch.testing.assert_close(expected_loss(jal, logits, onehot), jal(logits, labels))
    other = torch.softmax(torch.randn(6, 5, generator=gen), 1)
    mixed = expected_loss(jal, logits, 0.3 * target + 0.7 * other)
    linear = 0.3 * expected_loss(jal, logits, target) + 0.7 * expected_loss(jal, logits, other)
    torch.testing.assert_close(mixed, linear)


def test_the_gmm_split_finds_the_low_loss_mode_whatever_the_loss_scale():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.normal(0.2, 0.05, 700), rng.normal(1.5, 0.2, 300)])
    prob = clean_probability(losses, seed=0)
    assert (prob[:700] > 0.5).mean() > 0.99 and (prob[700:] < 0.5).mean() > 0.99
    # the losses are scaled to [0, 1] first, so a bounded loss or a shifted one splits the same way
    np.testing.assert_allclose(clean_probability(losses * 0.01 + 3.0, seed=0), prob, atol=1e-6)


def test_mixmatch_mixes_inputs_and_targets_alike_and_keeps_targets_distributions():
    rng = np.random.default_rng(0)
    weights = [mix_weight(rng, 4.0) for _ in range(1000)]
    assert min(weights) >= 0.5 and max(weights) <= 1.0
    inputs = torch.arange(8.0).view(4, 2)
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.9, 0.1]])
    perm = torch.tensor([1, 0, 3, 2])
    mixed_x, mixed_t = mixup(inputs, targets, 0.75, perm)
    torch.testing.assert_close(mixed_x[0], 0.75 * inputs[0] + 0.25 * inputs[1])
    torch.testing.assert_close(mixed_t[2], torch.tensor([0.75 * 0.5 + 0.25 * 0.9, 0.75 * 0.5 + 0.25 * 0.1]))
    torch.testing.assert_close(mixed_t.sum(1), torch.ones(4))
    same_x, same_t = mixup(inputs, targets, 1.0, perm)
    assert torch.equal(same_x, inputs) and torch.equal(same_t, targets)


def test_refinement_and_sharpening():
    p = torch.tensor([[0.6, 0.3, 0.1]])
    torch.testing.assert_close(sharpen(p, 1.0), p)
    torch.testing.assert_close(sharpen(p, 0.5), p**2 / (p**2).sum())
    label = torch.tensor([[0.0, 1.0, 0.0]])
    torch.testing.assert_close(refine(label, torch.tensor([[1.0]]), p), label)  # certainly clean: the label
    torch.testing.assert_close(refine(label, torch.tensor([[0.0]]), p), p)  # certainly noisy: the prediction
    torch.testing.assert_close(refine(label, torch.tensor([[0.25]]), p), torch.tensor([[0.45, 0.475, 0.075]]))


def test_elr_target_update_and_regulariser_match_a_hand_computation():
    # p = (1/3, 1/3, 1/3) and (1/2, 1/4, 1/4); β = 0.5, targets start at zero
    logits = torch.tensor([[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0]], requires_grad=True)
    targets = torch.zeros(4, 3)
    idx = torch.tensor([3, 1])
    reg = elr_regulariser(targets, idx, logits, beta=0.5)
    # t = 0.5·p, so <t, p> = 0.5·Σp² = 1/6 and 0.1875
    torch.testing.assert_close(reg, torch.tensor([math.log(1 - 1 / 6), math.log(1 - 0.1875)]))
    torch.testing.assert_close(targets[3], torch.full((3,), 1 / 6))
    torch.testing.assert_close(targets[1], torch.tensor([0.25, 0.125, 0.125]))
    assert targets[0].abs().sum() == 0 and targets[2].abs().sum() == 0  # rows outside the batch keep theirs
    # a second step with the same predictions: t = 0.5·t + 0.5·p = 0.75·p
    reg = elr_regulariser(targets, idx, logits, beta=0.5)
    torch.testing.assert_close(reg, torch.tensor([math.log(1 - 0.75 / 3), math.log(1 - 0.75 * 0.375)]))
    reg.sum().backward()  # the gradient flows through p only: the targets are constants
    assert logits.grad is not None and not targets.requires_grad
    # a saturated prediction is clamped to [1e-4, 1 − 1e-4] and the target renormalised
    saturated = torch.tensor([[100.0, 0.0, 0.0]])
    fresh = torch.zeros(1, 3)
    reg = elr_regulariser(fresh, torch.tensor([0]), saturated, beta=0.5)
    p = torch.tensor([1 - 1e-4, 1e-4, 1e-4])
    torch.testing.assert_close(fresh[0], 0.5 * p / p.sum())
    torch.testing.assert_close(reg, torch.log(1 - (0.5 * p / p.sum() * p).sum()).view(1))


@pytest.mark.parametrize("dataset, noise, method, expected", [
    ("cifar10", "symmetric:0.8", "dividemix",
     {"p_threshold": 0.6, "temperature": 0.5, "alpha": 4.0, "lambda_u": 50.0, "warmup_epochs": 10}),
    ("cifar10", "symmetric:0.2", "dividemix",
     {"p_threshold": 0.5, "temperature": 0.5, "alpha": 4.0, "lambda_u": 0.0, "warmup_epochs": 10}),
    ("cifar10", "asymmetric:0.2", "dividemix",
     {"p_threshold": 0.5, "temperature": 0.5, "alpha": 4.0, "lambda_u": 0.0, "warmup_epochs": 10}),
    ("cifar100", "symmetric:0.6", "dividemix",
     {"p_threshold": 0.5, "temperature": 0.5, "alpha": 4.0, "lambda_u": 150.0, "warmup_epochs": 30}),
    ("cifar10n", "worst", "dividemix",  # real noise: the dataset's default (cifar10n uses cifar10's preset)
     {"p_threshold": 0.5, "temperature": 0.5, "alpha": 4.0, "lambda_u": 25.0, "warmup_epochs": 10}),
    ("cifar10", "symmetric:0.4", "elr", {"beta": 0.7, "lam": 3.0}),
    ("cifar10", "asymmetric:0.4", "elr", {"beta": 0.9, "lam": 1.0}),
    ("cifar100n", "noisy", "elr", {"beta": 0.9, "lam": 7.0}),
    ("cifar10", "symmetric:0.4", "erm", {}),
])  # fmt: skip
def test_method_presets_follow_the_dataset_and_noise_level(dataset, noise, method, expected):
    assert Job(dataset, noise, method=method).settings()["method_params"] == expected


def test_explicit_method_parameters_override_the_preset_and_change_the_run_id():
    preset = Job("cifar10", "symmetric:0.8", method="dividemix")
    explicit = Job("cifar10", "symmetric:0.8", method="dividemix", method_params={"lambda_u": 5})
    assert explicit.settings()["method_params"] == {**preset.settings()["method_params"], "lambda_u": 5}
    assert explicit.key() != preset.key()
    # the validated job carries the effective values, so the learner and the record see them too
    checked = validate(preset)
    assert checked.method_params["lambda_u"] == 50.0 and checked.key() == preset.key()
    # another preset, other values
    other = Job("cifar10", "symmetric:0.8", method="dividemix", preset="cifar100")
    assert other.settings()["method_params"]["warmup_epochs"] == 30


@pytest.mark.parametrize("args, fragment", [
    (["--method", "dividemix", "--method-param", "p_threshold=1.0"], "p_threshold=1.0"),
    (["--method", "dividemix", "--method-param", "p_threshold=0"], "p_threshold=0"),
    (["--method", "dividemix", "--method-param", "alpha=0"], "alpha=0"),
    (["--method", "dividemix", "--method-param", "lambda_u=-1"], "lambda_u=-1"),
    (["--method", "dividemix", "--epochs", "10"], "warmup_epochs=10"),  # the preset's warm-up leaves no epoch
    (["--method", "elr", "--method-param", "beta=1.0"], "beta=1.0"),
    (["--method", "elr", "--method-param", "beta=-0.1"], "beta=-0.1"),
    (["--method", "elr", "--method-param", "lam=-1"], "lam=-1"),
])  # fmt: skip
def test_bad_values_fail_on_one_line_before_anything_trains(args, fragment, cli, tmp_path):
    out = cli("run", "--noise", "symmetric:0.6", *args, "--out", tmp_path / "out")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jal-plugins run: error:") and fragment in lines[0], out.stderr
    assert not list(tmp_path.glob("out/runs/*"))


def _curve(out):
    (path,) = out.glob("runs/*/curve.json")
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in json.loads(path.read_text())]


@pytest.mark.parametrize("method, params, kill_after", [
    ("dividemix", ["--method-param", "warmup_epochs=2"], 3),  # killed once co-divided epochs have begun
    ("elr", [], 2),
])  # fmt: skip
def test_trains_through_the_runner_and_a_killed_run_resumes_to_the_same_result(method, params, kill_after,
                                                                               tmp_path, env):  # fmt: skip
    args = ["run", "--noise", "symmetric:0.6,exact=false", "--method", method, *params, "--loss", "ce",
            "--epochs", "6", "--model-param", "width=0.5", "--json"]  # fmt: skip
    command = [sys.executable, "-m", "jal_plugins", *args]
    def start(out):
        return subprocess.Popen([*command, "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    whole, killed = start(tmp_path / "whole"), tmp_path / "killed"
    proc = start(killed)  # the two run side by side; this one is killed mid-run
    deadline, epoch = time.time() + 240, 0
    while time.time() < deadline and epoch < kill_after and proc.poll() is None:
        found = list(killed.glob("runs/*/checkpoint.pt"))
        epoch = read_checkpoint(found[0])["epoch"] if found else 0
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert kill_after <= epoch < 6 and not (killed / "results.jsonl").exists(), epoch
    resumed = subprocess.run([*command, "--out", str(killed)], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    stdout, stderr = whole.communicate(timeout=300)
    assert whole.returncode == 0, stderr
    (record,) = json.loads(resumed.stdout)
    (reference,) = json.loads(stdout)
    assert _curve(killed) == _curve(tmp_path / "whole") and len(_curve(killed)) == 6
    assert record["test_accuracy"] == reference["test_accuracy"] > 0.5
    assert record["method"] == method and read_records(killed / "results.jsonl")[0]["run_id"] == record["run_id"]
    if method == "dividemix":
        assert record["method_params"]["warmup_epochs"] == 2 and len(record["method_info"]["labelled"]) == 2
