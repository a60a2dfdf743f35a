"""The one training core: every kind of runs behind one interface, one loop, deterministic mode, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from jal_plugins import create_loss, create_method, create_model
from jal_plugins.autostack import Stacks
from jal_plugins.engine import DeviceData, Runs, Stack, TrainConfig, seeded_init
from jal_plugins.folds import fold_networks
from jal_plugins.job import method_context
from jal_plugins.loop import train
from jal_plugins.methods.base import Learner
from jal_plugins.selection import Selections


def _context(epochs=2):
    return method_context(loss="ce", num_classes=10, input_shape=(64,), device=torch.device("cpu"), seed=0,
                          model="mlp", base_config={"epochs": epochs, "batch_size": 64, "lr": 0.05})  # fmt: skip


def _parts(seed):
    model = seeded_init(seed, lambda: create_model("mlp", 10, 64, 1, hidden=(32,)))
    return model, create_loss("ce", 10, reduction="none"), TrainConfig(epochs=2, batch_size=64, lr=0.05), seed


def test_every_kind_of_runs_has_the_one_interface_and_trains_through_the_loop(noisy_digits):
    x, noisy, *_ = noisy_digits
    data = DeviceData(x.astype(np.float32), noisy, "cpu")
    context = _context()
    kinds = {
        "stack": Stack(*zip(*[_parts(s) for s in (0, 1)]), "cpu"),
        "stacks": Stacks([_parts(s) for s in (0, 1, 2)], [2, 1], "cpu", (64,)),
        "out-of-fold": fold_networks(context, 2),
        "selection": Selections([context], [[{"loss_params": {}, "config": {}}]]),
        "learner": Learner(create_method("co-teaching", context, forget_rate=0.2)),
    }
    for name, runs in kinds.items():
        assert isinstance(runs, Runs), name
        train(runs, data)
        assert runs.epoch == runs.epochs, name
        assert all(len(h) == runs.epochs for h in runs.histories) and runs.diverged == [None] * runs.runs, name
        assert runs.logits(data).shape[:2] == (runs.runs, len(data)), name
        assert len(runs.run_states()) == runs.runs and isinstance(runs.info(0), dict), name


def test_deterministic_mode_holds_for_the_run_and_is_restored_after(noisy_digits):
    x, noisy, *_ = noisy_digits
    data = DeviceData(x.astype(np.float32), noisy, "cpu")
    seen = []

    def probe(runs, stats):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                     torch.backends.cudnn.benchmark))  # fmt: skip

    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    train(Stack(*[[p] for p in _parts(0)], "cpu"), data, callbacks=(probe,), reproducible=True)
    assert seen == [(True, True, False)] * 2
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark) == before  # fmt: skip
    seen.clear()
    train(Stack(*[[p] for p in _parts(0)], "cpu"), data, callbacks=(probe,))
    assert seen == [before] * 2


PROBE_PLUGIN = """
import torch
from jal_plugins import hookimpl


class Probe:
    '''ERM that notes whether PyTorch's deterministic algorithms were on while it trained.'''

    def __init__(self, context, fail=False):
        self.inner, self.fail, self.seen = context.trainer(), fail, []

    def __getattr__(self, name):  # the rest of the learner interface is the trainer's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def train_epoch(self, data, rank=0, world=1):
        if self.fail:
            raise RuntimeError("the probe broke on purpose")
        self.seen.append(torch.are_deterministic_algorithms_enabled())
        return self.inner.train_epoch(data, rank, world)

    def info(self):
        return {"deterministic": self.seen}


@hookimpl
def register_methods(register):
    register("probe", Probe)
"""


@pytest.fixture(scope="module")
def probe_env(tmp_path_factory, make_dist, env):
    root = tmp_path_factory.mktemp("probe")
    make_dist(root, "probe-method", "0.1.0", "probe_method_plugin", PROBE_PLUGIN)
    return {**env, "PYTHONPATH": f"{root}:{env.get('PYTHONPATH', '')}"}


def _run(env, *args):
    return subprocess.run([sys.executable, "-m", "jal_plugins", "run", "--method", "probe", "--epochs", "2", *args],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip


def test_deterministic_true_trains_the_run_under_deterministic_algorithms(probe_env):
    on, off = _run(probe_env, "--set", "deterministic=true", "--json"), _run(probe_env, "--json")
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    assert json.loads(on.stdout)[0]["method_info"] == {"deterministic": [True, True]}
    assert json.loads(off.stdout)[0]["method_info"] == {"deterministic": [False, False]}


def test_a_bug_is_an_internal_error_not_a_usage_error(probe_env):
    out = _run(probe_env, "--method-param", "fail=true")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0] == ("jal-plugins run: internal error: RuntimeError: the probe broke on purpose "
                        "(run with --debug for the traceback)")  # fmt: skip
    assert "Traceback" in _run(probe_env, "--method-param", "fail=true", "--debug").stderr


def test_a_checkpoint_of_the_earlier_layout_is_moved_aside_with_a_warning(tmp_path):
    from jal_plugins.results import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 3, "settings": {"seed": 0}}, path)  # as the last version wrote it: no format
    with pytest.warns(UserWarning, match="another version of jal-plugins"):
        assert load_checkpoint(path, {"seed": 0}, "cpu") is None
    assert not path.exists() and (tmp_path / "checkpoint.pt.stale").exists()
