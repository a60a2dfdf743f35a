"""Training methods (ERM, Co-teaching, cleanlab pruning, DivideMix, ELR) with real training, resume, and a third-party method."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from jal_plugins import JALClassifier, create_loss, create_method, create_model
from jal_plugins.datasets import digits
from jal_plugins.engine import DeviceData, TrainConfig
from jal_plugins.methods import MethodContext
from jal_plugins.noise.synthetic import Symmetric

NOISE = "symmetric:0.4,exact=false"


def test_sample_selection_beats_plain_ce_on_noisy_digits(cli):
    out = cli("run", "--dataset", "digits", "--noise", NOISE, "--loss", "ce", "--method", "erm", "co-teaching",
              "cleanlab-prune", "--seed", "0", "1", "2", "--workers", "2", "--json", timeout=1200)  # fmt: skip
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    acc = {m: np.mean([r["test_accuracy"] for r in records if r["method"] == m]) for m in ("erm", "co-teaching", "cleanlab-prune")}
    assert acc["co-teaching"] - acc["erm"] >= 0.05, acc
    assert acc["cleanlab-prune"] - acc["erm"] >= 0.05, acc
    teach = [r for r in records if r["method"] == "co-teaching"]
    assert all(r["method_info"]["forget_rate"] == 0.4 for r in teach)
    pruned = [r["method_info"] for r in records if r["method"] == "cleanlab-prune"]
    # about 40 % of the 1,297 training labels are wrong; pruning should remove a comparable share
    assert all(300 < info["removed"] < 700 and info["kept"] + info["removed"] == 1297 for info in pruned)


@pytest.fixture(scope="module")
def noisy_digits():
    data = digits()
    noisy = Symmetric(0.4, exact=False).apply(data.y_train, num_classes=10, seed=0)
    return data, noisy


def _context(data, epochs=6, noise_rate=0.4, seed=0):
    def build_loss(name):
        return create_loss(name, 10, reduction="none")

    return MethodContext(
        "ce", 10, torch.device("cpu"), seed,
        build_model=lambda: create_model("cnn4", 10, 1, input_size=8, width=0.5),
        build_loss=build_loss, build_config=lambda name: TrainConfig(epochs=epochs, batch_size=64, lr=0.05),
        noise_rate=noise_rate,
    )  # fmt: skip


@pytest.mark.parametrize("method, params, stop", [
    ("co-teaching", {"ramp_epochs": 3}, 2),
    ("cleanlab-prune", {"folds": 2, "cv_epochs": 3}, 2),  # stops while the folds train
    ("cleanlab-prune", {"folds": 2, "cv_epochs": 2}, 6),  # stops after pruning
    ("dividemix", {"warmup_epochs": 2}, 4),  # stops after two co-divided epochs
    ("elr", {}, 3),
])  # fmt: skip
def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(noisy_digits, tmp_path, method, params, stop):
    data, noisy = noisy_digits
    train = DeviceData(data.x_train, noisy, "cpu", data.mean, data.std)
    test = DeviceData(data.x_test, data.y_test, "cpu", data.mean, data.std)
    whole = create_method(method, _context(data), **params)
    while whole.epoch < whole.epochs:
        whole.train_epoch(train)
    first = create_method(method, _context(data), **params)
    while first.epoch < stop:
        first.train_epoch(train)
    torch.save(first.state_dict(), tmp_path / "checkpoint.pt")
    resumed = create_method(method, _context(data), **params)
    resumed.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True))
    assert resumed.epoch == stop
    while resumed.epoch < resumed.epochs:
        resumed.train_epoch(train)
    torch.testing.assert_close(resumed.logits(test), whole.logits(test))
    assert len(resumed.history) == len(whole.history) == whole.epochs


def test_cleanlab_prune_removes_mostly_flipped_labels(noisy_digits):
    data, noisy = noisy_digits
    learner = create_method("cleanlab-prune", _context(data, epochs=20), folds=3)
    train = DeviceData(data.x_train, noisy, "cpu", data.mean, data.std)
    while learner.epoch < learner.epochs:
        learner.train_epoch(train)
    removed = ~learner.keep
    flipped = noisy != data.y_train
    precision = (removed & flipped).sum() / removed.sum()
    recall = (removed & flipped).sum() / flipped.sum()
    assert precision > 0.7 and recall > 0.7, (precision, recall)


def test_co_teaching_ramps_its_forget_rate_and_estimates_it_for_real_noise(noisy_digits):
    data, noisy = noisy_digits
    learner = create_method("co-teaching", _context(data, epochs=3, noise_rate=None), ramp_epochs=2, folds=2)
    assert learner.forget_rate is None  # unknown until estimated from the data
    learner.train_epoch(DeviceData(data.x_train, noisy, "cpu", data.mean, data.std))
    realized = np.mean(noisy != data.y_train)
    assert abs(learner.forget_rate - realized) < 0.15, (learner.forget_rate, realized)
    assert [learner.rate(e) for e in range(4)] == pytest.approx([0, learner.forget_rate / 2, learner.forget_rate, learner.forget_rate])


def test_method_parameters_are_checked(noisy_digits, cli):
    data, _ = noisy_digits
    with pytest.raises(ValueError, match="forget_rate must be >= 0 and < 1, got forget_rate=1.0"):
        create_method("co-teaching", _context(data), forget_rate=1.0)
    with pytest.raises(ValueError, match="folds must be an integer >= 2, got folds=1"):
        create_method("cleanlab-prune", _context(data), folds=1)
    with pytest.raises(KeyError, match="unknown loss 'nope'"):
        create_method("cleanlab-prune", _context(data), cv_loss="nope")
    with pytest.raises(ValueError, match="'co-teaching' got unknown parameter"):
        create_method("co-teaching", _context(data), rate=0.2)
    with pytest.raises(KeyError, match="did you mean 'co-teaching'"):
        create_method("coteachin", _context(data))
    out = cli("run", "--method", "co-teaching", "--method-param", "forget_rate=1.5", "--epochs", "1")
    assert out.returncode == 2 and "forget_rate=1.5" in out.stderr and "Traceback" not in out.stderr


def test_estimator_method_choice_pickles_and_predicts(noisy_digits):
    data, noisy = noisy_digits
    x = data.x_train[:, 0].reshape(len(noisy), -1) / 255.0
    clf = JALClassifier(loss="ce", method="co-teaching", method_params={"forget_rate": 0.4}, epochs=5, random_state=0,
                        calibrate=False)  # fmt: skip
    clf.fit(x, noisy)
    assert clf.trainer_.learner.forget_rate == 0.4 and len(clf.history_) == 5
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(x), clf.predict_proba(x))
    pruned = JALClassifier(method="cleanlab-prune", method_params={"folds": 2, "cv_epochs": 2}, epochs=3, random_state=0,
                           loss_params={"a": 30}, calibrate=False)  # fmt: skip
    pruned.fit(x, noisy)
    assert len(pruned.history_) == 2 + 3 and pruned.predict(x).shape == (len(x),)


METHOD_PLUGIN = """
import torch
from jal_plugins import hookimpl


class EveryNth:
    '''Trains the run's network on every n-th row only.'''

    def __init__(self, context, n=2):
        self.inner = context.trainer()
        self.n = n
        self.rows = None

    model = property(lambda self: self.inner.model)
    epoch = property(lambda self: self.inner.epoch)
    epochs = property(lambda self: self.inner.epochs)
    history = property(lambda self: self.inner.history)

    def train_epoch(self, data, rank=0, world=1):
        part = data.subset(torch.arange(0, len(data), self.n))
        self.rows = len(part)
        return self.inner.train_epoch(part, rank, world)

    def logits(self, data):
        return self.inner.logits(data)

    def accuracy(self, data):
        return self.inner.accuracy(data)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)

    def info(self):
        return {"rows": self.rows}


@hookimpl
def register_methods(register):
    register("every-nth", EveryNth)
"""


def test_third_party_method_runs_through_the_runner(tmp_path, make_dist, env):
    make_dist(tmp_path, "nth-method", "0.4.0", "nth_method_plugin", METHOD_PLUGIN)
    env = {**env, "PYTHONPATH": f"{tmp_path}:{env.get('PYTHONPATH', '')}"}
    run = [sys.executable, "-m", "jal_plugins"]
    listing = subprocess.run([*run, "list"], capture_output=True, text=True, env=env, timeout=300)
    assert "every-nth" in listing.stdout and "nth-method" in listing.stdout
    out = subprocess.run([*run, "run", "--method", "every-nth", "--method-param", "n=3", "--epochs", "2", "--json"],
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    (record,) = json.loads(out.stdout)
    assert record["method"] == "every-nth" and record["method_info"] == {"rows": 433}  # ceil(1297 / 3)
