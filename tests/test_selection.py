"""a="auto": JAL's a chosen on held-out noisy labels (candidates as one stack), and calibration."""

import json
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import checkpoints
from sklearn.base import clone

from jal_plugins import JALClassifier
from jal_plugins.engine import DeviceData, Diverged
from jal_plugins.job import method_context
from jal_plugins.folds import splits
from jal_plugins.loop import raise_divergence, train
from jal_plugins.selection import Selections, fit_temperature, parse


def _ece(probs, labels, bins=15):
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    return sum(abs(correct[index == b].mean() - confidence[index == b].mean()) * (index == b).mean()
               for b in range(bins) if (index == b).any())  # fmt: skip


@pytest.fixture(scope="module")
def chosen(noisy_digits):
    x, noisy, *_ = noisy_digits
    return JALClassifier(random_state=0, epochs=30).fit(x, noisy)


def test_the_default_estimator_chooses_a_among_its_candidates(chosen, noisy_digits):
    x, noisy, _, x_test, y_test = noisy_digits
    grid = parse("jal-ce", {"a": "auto"})[1].candidates({}, {})
    assert chosen.candidates_ == grid and len(chosen.selection_scores_) == len(grid)
    best = grid.index({"loss_params": {"a": chosen.a_, "beta": chosen.beta_}, "config": {"weight_decay": chosen.weight_decay_}})
    scores = np.asarray(chosen.selection_scores_)
    # the top score, or one the held-out labels cannot tell from it (a standard error of ~650 rows)
    assert scores[best] >= scores.max() - 0.02 and (scores[best + 1:] < scores.max()).all()
    assert chosen.a_ == grid[best]["loss_params"]["a"] and chosen.beta_ == grid[best]["loss_params"].get("beta")
    assert chosen.score(x_test, y_test) > 0.85
    plain = JALClassifier(random_state=0, epochs=30, loss_params={"a": chosen.a_, "beta": chosen.beta_},
                          weight_decay=chosen.weight_decay_, calibrate=False).fit(x, noisy)  # fmt: skip
    # the refit is the chosen candidate trained on all the data: the same network as a plain fit with it
    np.testing.assert_array_equal(plain.predict(x_test), chosen.predict(x_test))


def test_calibration_brings_confidence_in_line_with_the_clean_labels(chosen, noisy_digits):
    x, noisy, _, x_test, y_test = noisy_digits
    probs = chosen.predict_proba(x_test)
    assert probs.dtype == np.float64 and np.allclose(probs.sum(1), 1) and 0.25 < chosen.noise_rate_ < 0.55
    assert _ece(probs, y_test) <= 0.05
    # CE learns the noise, so it is unsure of the clean class: calibrated through the noise, it must
    # sharpen (τ < 1) and come closer to the clean labels, without changing what it predicts
    unsure = JALClassifier(loss="ce", random_state=0, tune=False).fit(x, noisy)
    probs = unsure.predict_proba(x_test)
    raw = torch.softmax(torch.as_tensor(np.log(probs)) * unsure.temperature_, 1).numpy()  # undo τ
    assert unsure.temperature_ < 0.8 and _ece(probs, y_test) < 0.8 * _ece(raw, y_test)
    np.testing.assert_array_equal(probs.argmax(1), raw.argmax(1))


def test_auto_is_clone_safe_deterministic_and_pickles(chosen, noisy_digits):
    x, noisy, _, x_test, _ = noisy_digits
    again = clone(chosen).fit(x, noisy)
    assert again.a_ == chosen.a_ and again.temperature_ == chosen.temperature_
    np.testing.assert_array_equal(again.predict_proba(x_test), chosen.predict_proba(x_test))
    assert "a_" not in clone(chosen).__dict__
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(chosen)).predict_proba(x_test), chosen.predict_proba(x_test))


def test_temperature_fitted_through_the_noise_undoes_over_and_under_confidence():
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 3, (4000,), generator=gen)
    logits = torch.randn(4000, 3, generator=gen) + 3.0 * torch.nn.functional.one_hot(clean, 3)  # calibrated at τ=1
    torch.manual_seed(0)
    truth = torch.distributions.Categorical(logits=logits).sample().numpy()
    flip = np.random.default_rng(0).random(4000) < 0.4  # 40 % of the labels move to another class
    noisy = np.where(flip, (truth + np.random.default_rng(1).integers(1, 3, 4000)) % 3, truth)
    for scale, tau in ((2.0, 2.0), (1.0, 1.0), (0.6, 0.6)):
        fitted, noise = fit_temperature(scale * logits, noisy)
        assert fitted == pytest.approx(tau, rel=0.2) and noise == pytest.approx(0.4, abs=0.05), (scale, fitted, noise)


def test_a_class_seen_once_is_trained_on_and_too_few_samples_name_the_fix():
    labels = np.array([0] * 8 + [1] * 3 + [2])
    ((fit, held),) = splits(labels, 1, seed=0)
    assert sorted(np.r_[fit, held]) == list(range(12)) and 11 in fit and set(labels[held]) == {0, 1}
    halves = splits(labels, 2, seed=0)  # cross-fitting: every row held out once, the lone one never
    assert sorted(np.concatenate([h for _, h in halves])) == list(range(11))
    assert all(11 in t and not set(t) & set(h) and set(labels[h]) == {0, 1} for t, h in halves)
    x = np.random.default_rng(0).normal(size=(12, 3))
    JALClassifier(epochs=2).fit(x, labels)
    with pytest.raises(ValueError, match=r"3 samples of 3 classes \(3 seen once\).*loss_params=\{'a': 30\}, calibrate=False"):
        JALClassifier(epochs=2).fit(x[:3], [0, 1, 2])
    JALClassifier(epochs=2, loss_params={"a": 30}, calibrate=False).fit(x[:3], [0, 1, 2])


@pytest.mark.parametrize("bad, fragment", [({"calibrate": "yes"}, "calibrate='yes'"), ({"loss_params": {"a": 0.5}}, "a=0.5")])
def test_bad_settings_are_named(noisy_digits, bad, fragment):
    x, noisy, *_ = noisy_digits
    with pytest.raises(ValueError, match=fragment):
        JALClassifier(epochs=1, **bad).fit(x[:200], noisy[:200])


def test_partial_fit_keeps_a_fixed_and_refuses_an_explicit_auto(noisy_digits):
    x, noisy, *_ = noisy_digits
    online = JALClassifier(random_state=0, classes=list(range(10))).partial_fit(x, noisy)
    assert online.temperature_ == 1.0 and not hasattr(online, "a_")
    with pytest.raises(ValueError, match="partial_fit"):
        JALClassifier(loss_params={"a": "auto"}, classes=list(range(10))).partial_fit(x, noisy)


def _learner(noisy_digits, grid):
    x, noisy, *_ = noisy_digits
    context = method_context(loss="jal-ce", num_classes=10, input_shape=(64,), device=torch.device("cpu"), seed=0,
                             base_config={"epochs": 4, "batch_size": 64, "lr": 0.05})  # fmt: skip
    return Selections([context], [grid]), DeviceData(x.astype(np.float32), noisy, "cpu")


def test_a_diverging_candidate_is_dropped_with_a_warning_and_all_diverging_is_an_error(noisy_digits):
    grid = [{"loss_params": {"a": 8.0}, "config": {}}, {"loss_params": {"a": 16.0}, "config": {"lr": 1e9, "clip": None}}]
    learner, data = _learner(noisy_digits, grid)
    with pytest.warns(UserWarning, match="diverged"):
        train(learner, data)
    assert learner.info(0)["chosen"] == grid[0] and learner.info(0)["held_out_accuracy"][1] is None
    doomed, data = _learner(noisy_digits, [dict(grid[1], loss_params={"a": a}) for a in (4.0, 8.0)])
    with pytest.raises(Diverged, match="every candidate did.*smaller learning rate"):
        train(doomed, data, until=1, callbacks=(raise_divergence(),))


@pytest.mark.parametrize("stop", [2, 6])  # inside the selection, inside the refit
def test_a_selection_resumes_from_a_checkpoint_as_if_never_stopped(noisy_digits, tmp_path, stop):
    grid = parse("jal-ce", {"a": "auto"})[1].candidates({}, {})[:3]
    whole, data = _learner(noisy_digits, grid)
    train(whole, data)
    first, _ = _learner(noisy_digits, grid)
    train(first, data, until=stop)
    torch.save(first.run_states()[0], tmp_path / "checkpoint.pt")
    resumed, _ = _learner(noisy_digits, grid)
    resumed.load_states([torch.load(tmp_path / "checkpoint.pt", weights_only=True)])
    assert resumed.epoch == stop
    train(resumed, data)
    assert resumed.info(0)["chosen"] == whole.info(0)["chosen"]
    torch.testing.assert_close(resumed.logits(data), whole.logits(data))


def test_the_runner_records_what_auto_chose(cli, tmp_path):
    out = cli("run", "--model", "mlp", "--noise", "symmetric:0.4,exact=false", "--loss", "jal-ce,a=auto", "--epochs", "3",
              "--out", tmp_path, "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    (record,) = json.loads(out.stdout)
    assert record["loss_params"]["a"] == "auto" and record["method_info"]["chosen"]["loss_params"]["a"] > 1
    assert record["epochs"] == 3 and len(json.loads(next(tmp_path.glob("runs/*/curve.json")).read_text())) == 6
    # beside a fixed a, each is its own column; the tuned one says with how many candidates
    both = cli("run", "--model", "mlp", "--noise", "symmetric:0.4,exact=false", "--loss", "jal-ce", "jal-ce,a=auto",
               "--epochs", "3", "--out", tmp_path)  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert "| noise | jal-ce | jal-ce (tuned, 8 candidates) |" in both.stdout
    refused = cli("run", "--loss", "ce,a=auto", "--epochs", "1")
    assert refused.returncode == 2 and "a=auto" in refused.stderr and "ce" in refused.stderr


def test_the_runner_trains_several_selections_as_one_unit_as_each_would_alone(cli, tmp_path):
    grid = ["run", "--model", "mlp", "--noise", "symmetric:0.4,exact=false", "pairflip:0.2", "--loss", "jal-ce,a=auto",
            "--epochs", "4", "--json"]  # fmt: skip
    together = cli(*grid, "--out", tmp_path / "together")
    alone = cli(*grid, "--stack", "1", "--out", tmp_path / "alone")
    assert together.returncode == 0 and alone.returncode == 0, together.stderr + alone.stderr
    together, alone = json.loads(together.stdout), json.loads(alone.stdout)
    assert [r["stack_size"] for r in together] == [2, 2] and [r["stack_size"] for r in alone] == [1, 1]
    for ours, theirs in zip(together, alone):
        assert ours["run_id"] == theirs["run_id"]
        assert ours["method_info"]["chosen"] == theirs["method_info"]["chosen"]
        np.testing.assert_allclose(ours["method_info"]["held_out_accuracy"], theirs["method_info"]["held_out_accuracy"], atol=0.01)
        assert abs(ours["test_accuracy"] - theirs["test_accuracy"]) <= 0.01


def test_killed_selections_resume_where_they_stopped(cli, env, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--model", "mlp", "--noise", "symmetric:0.4,exact=false", "--loss", "jal-ce,a=auto",
            "--seed", "0", "1", "--epochs", "100", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "jal_plugins", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (len(e := checkpoints(out)) == 2 and min(s["epoch"] for s in e.values()) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = checkpoints(out)
    assert len(killed) == 2 and all(3 <= s["epoch"] < 200 for s in killed.values())
    assert not (out / "results.jsonl").exists()
    finished = cli(*args, "--json")
    assert finished.returncode == 0, finished.stderr
    records = json.loads(finished.stdout)
    assert len(records) == 2 and all(r["method_info"]["chosen"]["loss_params"]["a"] > 1 for r in records)
    for run_dir in out.glob("runs/*"):
        curve = json.loads((run_dir / "curve.json").read_text())
        assert [c["epoch"] for c in curve] == list(range(1, 201))
        saved = killed[run_dir.name]["history"]
        assert curve[: len(saved)] == saved  # resumed, not retrained
