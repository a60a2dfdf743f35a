"""Fixtures shared by the test modules: the real CLI in a subprocess, a real third-party distribution, data."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def pytest_configure(config):
    """Under pytest-xdist, the tests that train in-process share the cores with the other workers."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def run_cli(*args, timeout=600, env=None, cwd=None):
    """``python -m jal_plugins ARGS`` in a subprocess; the CompletedProcess (text output)."""
    command = [sys.executable, "-m", "jal_plugins", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env or ENV, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="session")
def cli():
    """The real command line: ``cli("run", "--epochs", 1, ...)`` -> CompletedProcess."""
    return run_cli


@pytest.fixture(scope="session")
def env():
    """The environment the CLI subprocesses run in (one thread per process)."""
    return dict(ENV)


# A third-party loss for plugin sources (needs Loss, probs and target_column imported beside it).
CUBIC_MAE = '''
class CubicMAE(Loss):
    def __init__(self, num_classes, *, reduction="mean", power=3.0):
        super().__init__(num_classes, reduction)
        self.power = power

    def per_sample(self, logits, target):
        return (1 - target_column(probs(logits), target)) ** self.power
'''


def write_dist(root, dist, version, module, source):
    """A real installed distribution: ``*.dist-info`` with a ``jal_plugins`` entry point, and its module."""
    info = Path(root) / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[jal_plugins]\n{dist} = {module}\n")
    (Path(root) / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture(scope="session")
def make_dist():
    """``make_dist(root, dist, version, module, source)`` writes a plugin distribution under ``root``."""
    return write_dist


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (CI has it); tests that need it skip without it."""
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED


@pytest.fixture(scope="session")
def noisy_digits():
    """Digits in [0, 1]: ``(x_train, noisy, clean, x_test, y_test)``, 500 held out, 40 % symmetric noise."""
    import numpy as np
    from sklearn.datasets import load_digits

    from jal_plugins import create_noise_model

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    idx = np.random.default_rng(0).permutation(len(y))
    test, train = idx[:500], idx[500:]
    noisy = create_noise_model("symmetric", rate=0.4, exact=False).apply(y[train], 10, seed=0)
    return x[train], noisy, y[train], x[test], y[test]


def checkpoints(out) -> dict:
    """The readable ``runs/*/checkpoint.pt`` under ``out`` by run id; one caught mid-write is left out."""
    from jal_plugins.results import read_checkpoint

    found = {}
    for path in Path(out).glob("runs/*/checkpoint.pt"):
        try:
            found[path.parent.name] = read_checkpoint(path)
        except Exception:  # noqa: BLE001 - the atomic rename makes this rare
            pass
    return found


TOPICS = {"sport": ["goal", "match", "team", "coach", "league", "score", "referee", "stadium"],
          "food": ["bread", "soup", "chef", "recipe", "cheese", "spice", "oven", "salad"],
          "tech": ["laptop", "code", "server", "robot", "chip", "network", "software", "screen"]}  # fmt: skip
FILLER = ["the", "a", "today", "really", "new", "was", "great", "about", "my", "friend", "said", "old"]


def make_sentences(n: int, noise: float = 0.0, seed: int = 0):
    """``n`` short texts of three topics made from templates: ``(texts, noisy topics, clean topics)``,
    a ``noise`` fraction of the noisy topics moved to another topic."""
    import numpy as np

    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    clean = np.asarray([names[i % 3] for i in range(n)])
    texts = []
    for topic in clean:
        words = [*rng.choice(TOPICS[topic], 3), *rng.choice(FILLER, 4)]
        rng.shuffle(words)
        texts.append(" ".join(words))
    flip = rng.random(n) < noise
    noisy = np.where(flip, [names[(names.index(t) + 1) % 3] for t in clean], clean)
    return np.asarray(texts), noisy, clean


@pytest.fixture(scope="session")
def sentences():
    """``sentences(n, noise=0.0, seed=0) -> (texts, noisy topics, clean topics)``: a small text dataset."""
    return make_sentences
