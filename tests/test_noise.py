"""Noise models on real labels: exact counts, seeding, errors, utilities."""

import numpy as np
import pytest
import torch

from jal_plugins import create_noise_model
from jal_plugins.labelfiles import read_labels
from jal_plugins.noise import from_cleanlab, noise_rates, realized_transition_matrix, to_cleanlab


@pytest.fixture(scope="module")
def cifar10_clean(shared_data):
    return read_labels(shared_data / "CIFAR-10_human.pt", "clean_label")


@pytest.fixture(scope="module")
def cifar100_clean(shared_data):
    return read_labels(shared_data / "CIFAR-100_human.pt", "clean_label")


def _counts(clean, noisy, k):
    counts = np.zeros((k, k), dtype=int)
    np.add.at(counts, (clean, noisy), 1)
    return counts


def test_symmetric_08_exact_pair_counts(cifar10_clean):
    noisy = create_noise_model("symmetric", rate=0.8).apply(cifar10_clean, 10, seed=123)
    counts = _counts(cifar10_clean, noisy, 10)
    off = counts[~np.eye(10, dtype=bool)]
    assert (off == 444).all() and (np.diag(counts) == 5000 - 9 * 444).all()


def test_asymmetric_cifar10_04_moves_2000_per_source(cifar10_clean):
    noisy = create_noise_model("asymmetric", rate=0.4, mapping="cifar10").apply(cifar10_clean, 10, seed=1)
    counts = _counts(cifar10_clean, noisy, 10)
    for s, t in {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}.items():
        assert counts[s, t] == 2000 and counts[s].sum() - counts[s, s] == 2000
    for c in (0, 1, 6, 8):
        assert counts[c, c] == 5000


def test_asymmetric_cifar100_04_moves_200_per_class(cifar100_clean):
    noisy = create_noise_model("asymmetric", rate=0.4, mapping="cifar100").apply(cifar100_clean, 100, seed=1)
    counts = _counts(cifar100_clean, noisy, 100)
    for c in range(100):
        assert counts[c, c - c % 5 + (c % 5 + 1) % 5] == 200 and counts[c, c] == 300


def test_seeding_is_private_and_reproducible():
    labels = np.arange(1000) % 10
    model = create_noise_model("symmetric", rate=0.5)
    np.random.seed(7)
    torch.manual_seed(7)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    a, b = model.apply(labels, seed=3), model.apply(labels, seed=3)
    c = model.apply(labels, seed=4)
    d = model.apply(labels, seed=np.random.default_rng(3))
    assert (a == b).all() and (a == d).all() and (a != c).any()
    np.random.seed(99)  # the global RNG's state does not matter
    assert (model.apply(labels, seed=3) == a).all()
    np.random.seed(7)
    assert (np.random.get_state()[1] == np_state).all() and torch.equal(torch.get_rng_state(), torch_state)


def test_symmetric_options():
    labels = np.repeat(np.arange(10), 2000)
    per_sample = create_noise_model("symmetric", rate=0.4, exact=False).apply(labels, seed=0)
    assert abs(np.mean(per_sample != labels) - 0.4) < 0.02
    dividemix = create_noise_model("symmetric", rate=0.5, include_true_class=True)
    assert np.allclose(dividemix.transition_matrix(10).diagonal(), 0.55)
    assert abs(np.mean(dividemix.apply(labels, seed=0) != labels) - 0.45) < 0.01


def test_pairflip_and_transition():
    t = create_noise_model("pairflip", rate=0.3).transition_matrix(4)
    assert np.allclose(t[0], [0.7, 0.3, 0, 0]) and np.allclose(t[3], [0.3, 0, 0, 0.7])
    labels = np.repeat(np.arange(4), 100)
    noisy = create_noise_model("transition", matrix=t.tolist()).apply(labels, seed=0)
    assert np.allclose(realized_transition_matrix(labels, noisy), t)


def test_mnist_and_explicit_mappings():
    t = create_noise_model("asymmetric", rate=0.2, mapping="mnist").transition_matrix(10)
    assert t[7, 1] == t[2, 7] == t[5, 6] == t[6, 5] == t[3, 8] == pytest.approx(0.2)
    t = create_noise_model("asymmetric", rate=0.2, mapping={"0": 2}).transition_matrix(3)
    assert np.allclose(t, [[0.8, 0, 0.2], [0, 1, 0], [0, 0, 1]])


def test_instance_dependent_needs_features_and_hits_the_rate():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 500)
    features = rng.normal(size=(5000, 64)) + labels[:, None]
    model = create_noise_model("instance", rate=0.4)
    assert model.transition_matrix(10) is None
    with pytest.raises(ValueError, match="features"):
        model.apply(labels, seed=0)
    noisy = model.apply(labels, seed=0, features=features)
    assert abs(np.mean(noisy != labels) - 0.4) < 0.03
    assert (noisy == model.apply(labels, seed=0, features=features)).all()


def test_label_file_idn(shared_data, cifar10_clean):
    model = create_noise_model("label-file", path=str(shared_data / "cifar-idn-labels.npz"), key="cifar10_0.4")
    noisy = model.apply(cifar10_clean, 10)
    assert np.mean(noisy != cifar10_clean) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="50000 labels, expected 10"):
        model.apply(cifar10_clean[:10], 10)


def test_label_file_refuses_non_numpy_pickles(tmp_path):
    import pickle
    import zipfile

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"x": __import__("os").getcwd}))
    with pytest.raises(pickle.UnpicklingError, match="posix.getcwd|os.getcwd|refusing"):
        read_labels(path, "x")


@pytest.mark.parametrize(
    "name, params, call, fragment",
    [
        ("symmetric", {"rate": 1.5}, None, "rate=1.5"),
        ("symmetric", {"rate": -0.1}, None, "rate=-0.1"),
        ("asymmetric", {"mapping": "cifar1000"}, None, "cifar1000"),
        ("transition", {"matrix": [[0.5, 0.4], [0, 1]]}, None, "row 0 sums to 0.9"),
        ("symmetric", {"rate": 0.2}, ([0, 1, 10], 10), "found 10"),
        ("symmetric", {"rate": 0.2}, ([0, -1], 3), "found -1"),
    ],
)
def test_errors_name_the_value(name, params, call, fragment):
    with pytest.raises(ValueError, match=fragment):
        model = create_noise_model(name, **params)
        model.apply(*call)


def test_realized_matrix_and_cleanlab_conventions(cifar10_clean, shared_data):
    worst = read_labels(shared_data / "CIFAR-10_human.pt", "worse_label")
    t = realized_transition_matrix(cifar10_clean, worst)
    assert np.allclose(t.sum(1), 1)
    assert np.mean(noise_rates(cifar10_clean, worst)) == pytest.approx(0.40208)
    assert np.allclose(to_cleanlab(t).sum(0), 1) and np.allclose(from_cleanlab(to_cleanlab(t)), t)
