"""The stacked engine: R runs in one forward/backward give each run what it gets alone."""

import copy

import numpy as np
import pytest
import torch
from conftest import CUBIC_MAE
from torch import nn

from jal_plugins import create_loss, create_model, create_noise_model
from jal_plugins.datasets import digits
from jal_plugins.engine import DeviceData, Stack, TrainConfig, seeded_init
from jal_plugins.stack import NotStackable, StackedNet, run_major_layers

# Three runs that differ in everything a run may keep for itself.
RUNS = [
    dict(seed=0, loss="ce", noise=0.2, config=dict(lr=0.02, weight_decay=1e-4, clip=5.0)),
    dict(seed=1, loss="jal-ce", noise=0.4, config=dict(lr=0.05, l1=5e-5, clip=1.0, momentum=0.8)),
    dict(seed=2, loss="nce+rce", noise=0.0, config=dict(lr=0.01, weight_decay=5e-4, clip=None), weighted=True),
]


@pytest.fixture(scope="module")
def data():
    d = digits()
    train = DeviceData(d.x_train, d.y_train, "cpu", d.mean, d.std)
    test = DeviceData(d.x_test, d.y_test, "cpu", d.mean, d.std)
    labels = torch.stack([
        torch.as_tensor(create_noise_model("symmetric", rate=r["noise"], exact=False).apply(d.y_train, 10, seed=r["seed"]))
        for r in RUNS
    ])  # fmt: skip
    weights = torch.ones(len(RUNS), len(d.y_train))
    weights[2] = torch.rand(len(d.y_train), generator=torch.Generator().manual_seed(5)) + 0.5
    return d, train, test, labels, weights / weights.mean(1, keepdim=True)


def assert_relative(actual, expected, tol=1e-4):
    """``‖actual − expected‖ ≤ tol·‖expected‖``: relative error of the whole tensor."""
    error = (torch.linalg.norm(actual - expected) / torch.linalg.norm(expected)).item()
    assert error <= tol, f"relative error {error:.3g} > {tol}"


def _parts(run, model="cnn4", epochs=2, **params):
    config = TrainConfig(epochs=epochs, batch_size=128, augment="crop-flip", **run["config"])
    net = seeded_init(run["seed"], lambda: create_model(model, 10, 1, 8, **params))
    return net, create_loss(run["loss"], 10, reduction="none", preset="cifar10"), config, run["seed"]


def _train(runs, data, index, **kwargs):
    _, train, test, labels, weights = data
    models, losses, configs, seeds = zip(*[_parts(r, **kwargs) for r in runs])
    stack = Stack(models, losses, configs, seeds, "cpu", input_shape=(1, 8, 8))
    w = weights[index] if any(r.get("weighted") for r in runs) else None
    curves = [stack.train_epoch(train, labels[index], w) for _ in range(stack.epochs)]
    return stack, curves, stack.logits(test)


@pytest.mark.parametrize("model, params", [("cnn4", {"width": 0.5}), ("mlp", {})])
def test_a_stack_gives_every_run_what_it_gets_alone(data, model, params):
    stack, curves, logits = _train(RUNS, data, [0, 1, 2], model=model, **params)
    assert stack.runs == 3 and len(curves) == 2
    for r, run in enumerate(RUNS):
        _, alone_curves, alone_logits = _train([run], data, [r], model=model, **params)
        stacked_losses = [epoch[r]["train_loss"] for epoch in curves]
        alone_losses = [epoch[0]["train_loss"] for epoch in alone_curves]
        np.testing.assert_allclose(stacked_losses, alone_losses, rtol=1e-4)
        assert_relative(logits[r], alone_logits[0])


def test_a_diverging_run_is_reported_and_the_others_are_unaffected(data):
    blowup = dict(seed=3, loss="ce", noise=0.4, config=dict(lr=1e6, clip=None))
    stack, curves, logits = _train([RUNS[0], blowup, RUNS[1]], data, [0, 1, 1], model="mlp")
    assert stack.diverged[1] is not None and stack.diverged[1].epoch == 1
    assert curves[0][1] is None and all(epoch[1] is None for epoch in curves)
    assert torch.isfinite(logits).all()  # the frozen run keeps finite (zero) weights
    for r, run, index in ((0, RUNS[0], [0]), (2, RUNS[1], [1])):
        _, alone_curves, alone_logits = _train([run], data, index, model="mlp")
        np.testing.assert_allclose([e[r]["train_loss"] for e in curves], [e[0]["train_loss"] for e in alone_curves], rtol=1e-4)
        assert_relative(logits[r], alone_logits[0])


def test_run_states_move_between_stacks_and_single_runs(data, tmp_path):
    _, train, test, labels, _ = data
    plain = [dict(r, config=dict(r["config"]), weighted=False) for r in RUNS]
    stack, _, _ = _train(plain, data, [0, 1, 2], model="mlp", epochs=4)
    whole = stack.logits(test)
    # the same three runs: two epochs as a stack, checkpointed, then finished one by one
    models, losses, configs, seeds = zip(*[_parts(r, model="mlp", epochs=4) for r in plain])
    first = Stack(models, losses, configs, seeds, "cpu")
    for _ in range(2):
        first.train_epoch(train, labels)
    states = [first.run_state(r) for r in range(3)]
    torch.save(states, tmp_path / "states.pt")
    for r, state in enumerate(torch.load(tmp_path / "states.pt", weights_only=True)):
        alone = Stack(*[[x] for x in _parts(plain[r], model="mlp", epochs=4)], "cpu")
        alone.load_states([state])
        assert alone.epoch == 2
        while alone.epoch < alone.epochs:
            alone.train_epoch(train, labels[r : r + 1])
        assert_relative(alone.logits(test)[0], whole[r])
        assert [h["epoch"] for h in alone.histories[0]] == [1, 2, 3, 4]


def test_per_run_rows_train_each_run_on_its_own_part(data):
    _, train, test, labels, _ = data
    rows = [torch.arange(0, 600), torch.arange(600, 1200)]
    models, losses, configs, seeds = zip(*[_parts(r, model="mlp", epochs=2) for r in RUNS[:2]])
    stack = Stack(models, losses, configs, seeds, "cpu")
    for _ in range(2):
        stack.train_epoch(train, labels[:2], rows=rows)
    alone = Stack(*[[x] for x in _parts(RUNS[1], model="mlp", epochs=2)], "cpu")
    for _ in range(2):
        alone.train_epoch(train, labels[1:2], rows=rows[1:])
    assert_relative(stack.logits(test)[1], alone.logits(test)[0])


def test_every_built_in_network_stacks_and_unstacks_exactly():
    for name, c, size, params in [("mlp", 5, 1, {}), ("cnn4", 1, 28, {"width": 0.25}), ("cnn8", 3, 32, {"width": 0.125}),
                                  ("resnet34", 3, 32, {"width": 0.0625})]:  # fmt: skip
        models = [seeded_init(s, lambda: create_model(name, 7, c, size, **params)) for s in range(3)]
        example = torch.randn(2, c, size, size) if size > 1 else torch.randn(2, c)
        net = StackedNet(models, example)
        for r, m in enumerate(models):
            state = net.run_state_dict(r)
            assert state.keys() == m.state_dict().keys()
            for k, v in m.state_dict().items():
                torch.testing.assert_close(state[k], v)


class Shifted(nn.Sequential):
    """A Sequential with a forward of its own: its layers cannot be run one by one."""

    def forward(self, x):
        return super().forward(x) + 1


def test_a_stack_of_mlps_keeps_its_runs_apart_without_copies_and_other_networks_do_not_try():
    models = [seeded_init(s, lambda: create_model("mlp", 10, 1, 8)) for s in range(3)]
    net = StackedNet(models, torch.randn(2, 1, 8, 8))  # checked against each run alone
    assert run_major_layers(net.body) is not None
    x = torch.randn(3, 5, 1, 8, 8)
    torch.testing.assert_close(net(x), torch.stack([m(x[r]) for r, m in enumerate(models)]))
    shifted = StackedNet([Shifted(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)) for _ in range(2)], torch.randn(2, 4))
    assert run_major_layers(shifted.body) is None
    cnn = StackedNet([create_model("cnn4", 10, 1, 28, width=0.25) for _ in range(2)])
    assert run_major_layers(cnn.body) is None


class Centering(nn.Module):
    """Not per channel: it subtracts the mean over all features, which in a stack spans every run."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x - x.mean(1, keepdim=True))


class Pooled(Centering):
    def forward(self, x):
        return self.fc(x.mean(1, keepdim=True).expand(-1, 4))


def test_networks_that_cannot_stack_are_refused_with_the_reason():
    with pytest.raises(NotStackable, match="mixes what a stack keeps apart"):
        StackedNet([Centering() for _ in range(2)], torch.randn(2, 4))
    with pytest.raises(NotStackable, match="Pooled does not run as a stack"):
        StackedNet([Pooled() for _ in range(2)], torch.randn(2, 4))
    with pytest.raises(NotStackable, match="Dropout"):
        StackedNet([nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1)) for _ in range(2)])
    with pytest.raises(NotStackable, match="LayerNorm"):
        StackedNet([nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)) for _ in range(2)])
    with pytest.raises(ValueError, match="must share batch_size"):
        Stack([nn.Linear(4, 3), nn.Linear(4, 3)], [create_loss("ce", 3, reduction="none")] * 2,
              [TrainConfig(batch_size=32), TrainConfig(batch_size=64)], [0, 1], "cpu")  # fmt: skip


def test_a_stacked_estimator_style_copy_pickles(data, tmp_path):
    import pickle

    _, train, test, labels, _ = data
    stack, _, logits = _train(RUNS[:2], data, [0, 1], model="mlp", epochs=1)
    again = pickle.loads(pickle.dumps(stack))
    torch.testing.assert_close(again.logits(test), logits)
    moved = copy.deepcopy(stack).to("cpu")
    moved.train_epoch(train, labels[:2])  # still trains: its weights are bound to the new flat buffer
    assert moved.epoch == 2 and not torch.equal(moved.logits(test), logits)


def test_runs_split_into_stacks_get_what_one_stack_gives(data):
    from jal_plugins.autostack import Stacks

    _, train, test, labels, weights = data
    parts = [_parts(r, model="mlp") for r in RUNS]
    whole = Stack(*zip(*parts), "cpu", input_shape=(1, 8, 8))
    split = Stacks(parts, [2, 1], "cpu", (1, 8, 8))
    assert split.runs == 3 and split.epochs == 2 and split.sizes == [2, 1]
    for _ in range(split.epochs):
        ours, theirs = split.train_epoch(train, labels, weights), whole.train_epoch(train, labels, weights)
        np.testing.assert_allclose([s["train_loss"] for s in ours], [s["train_loss"] for s in theirs], rtol=1e-4)
    assert_relative(split.logits(test), whole.logits(test))
    states = split.run_states()
    again = Stacks([_parts(r, model="mlp") for r in RUNS], [1, 2], "cpu", (1, 8, 8))
    again.load_states(states)  # run states move between any split of the runs
    assert again.epoch == 2 and again.sizes == [1, 2]
    assert_relative(again.logits(test), split.logits(test), tol=1e-6)
    again.load_states(states, split.sizes)  # the saved grouping: a resume gives the same numbers bit for bit
    assert again.sizes == [2, 1] and torch.equal(again.logits(test), split.logits(test))
    with pytest.raises(ValueError, match=r"stack sizes \[2, 2\] do not split 3 runs"):
        again.load_states(states, [2, 2])


def test_the_probe_keeps_the_smallest_size_near_the_best():
    from jal_plugins.autostack import best_size

    assert best_size({1: 0.9, 2: 0.8, 4: 0.7, 8: 0.4, 16: 0.38}, 16) == 8  # a plateau before the gain
    assert best_size({1: 1.0, 2: 2.1}, 2) == 1  # a stack slower per run is never chosen
    assert best_size({1: 1.0, 2: 0.95}, 2) == 1  # a 5 % gain does not pay for a stack
    # 10 runs: size 4 trains 4 + 3 + 3 (the threes at the time of two) and size 8 trains 5 + 5 (at
    # the time of four), so one stack of 10 wins although 4 and 8 are near it per run
    times = {1: 1.0, 2: 0.6, 4: 0.4, 8: 0.38, 10: 0.3}
    assert best_size(times, 10) == 10
    assert best_size({**times, 10: 0.4}, 10) == 8  # 5 + 5 as fast as 10: the smaller
    assert best_size({**times, 10: 0.4}, 10, fewest=True) == 10  # or the fewer stacks
    assert best_size({1: 1.0, 2: 2.1}, 2, fewest=True) == 1  # never a slower one


PLUGIN = '''
from torch import nn
from jal_plugins import hookimpl
from jal_plugins.losses import Loss
from jal_plugins.losses.base import probs, target_column


''' + CUBIC_MAE + '''

class DropoutMLP(nn.Sequential):
    def __init__(self, num_classes, in_channels, *, input_size=1):
        super().__init__(nn.Flatten(1), nn.Linear(in_channels * input_size**2, 32), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(32, num_classes))


@hookimpl
def register_losses(register):
    register("cubic-mae", CubicMAE)


@hookimpl
def register_models(register):
    register("dropout-mlp", DropoutMLP)
'''


def test_the_runner_stacks_plugin_losses_and_trains_networks_that_cannot_stack_alone(tmp_path, make_dist, env):
    import json
    import subprocess
    import sys

    make_dist(tmp_path, "stack-plugins", "1.0", "stack_plugins", PLUGIN)
    env = {**env, "PYTHONPATH": f"{tmp_path}:{env.get('PYTHONPATH', '')}"}

    def run(*args):
        out = subprocess.run([sys.executable, "-m", "jal_plugins", "run", "--epochs", "3", "--json", *args],
                             capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout), out.stderr

    mixed = ["--model", "mlp", "--loss", "cubic-mae,power=2.0", "jal-ce", "--noise", "symmetric:0.4,exact=false"]
    stacked, _ = run(*mixed, "--stack", "2")
    alone, _ = run(*mixed, "--stack", "1")
    assert [r["stack_size"] for r in stacked] == [2, 2] and [r["stack_size"] for r in alone] == [1, 1]
    np.testing.assert_allclose([r["test_accuracy"] for r in stacked], [r["test_accuracy"] for r in alone], atol=0.005)
    logs = {}
    for stack in ("2", "auto"):
        records, logs[stack] = run("--model", "dropout-mlp", "--loss", "ce", "--seed", "0", "1", "--stack", stack)
        assert [r["stack_size"] for r in records] == [1, 1] and all(r["status"] == "ok" for r in records)
    assert "dropout-mlp does not stack" in logs["2"]
