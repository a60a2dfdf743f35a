"""Presets against the tables of losses-and-noise.md §2.1 (JAL code registry) and §2.4."""

import pytest

from jal_plugins import create_loss
from jal_plugins.registry import list_presets, preset_regularization

# §2.1, restated: dataset -> loss -> expected hyperparameters.
TABLE = {
    "cifar10": {
        "fl": {"gamma": 0.5}, "gce": {"q": 0.7}, "sce": {"alpha": 0.1, "beta": 1}, "mae": {"scale": 2},
        "agce": {"a": 0.6, "q": 0.6}, "aul": {"a": 5.5, "q": 3}, "ael": {"a": 2.5},
        "nce+rce": {"alpha": 1, "beta": 1}, "nce+mae": {"alpha": 1, "beta": 1},
        "nfl+rce": {"alpha": 1, "beta": 1, "gamma": 0.5},
        "nce+agce": {"alpha": 1, "beta": 4, "a": 6, "q": 1.5}, "nce+aul": {"alpha": 1, "beta": 4, "a": 6.3, "q": 1.5},
        "nce+ael": {"alpha": 1, "beta": 4, "a": 5}, "anl-ce": {"alpha": 5, "beta": 5},
        "anl-fl": {"alpha": 5, "beta": 5, "gamma": 0.5}, "jal-ce": {"alpha": 1, "beta": 1, "a": 30},
        "jal-fl": {"alpha": 1, "beta": 1, "a": 30, "gamma": 0.5},
    },
    "cifar100": {
        "fl": {"gamma": 0.5}, "gce": {"q": 0.7}, "sce": {"alpha": 6, "beta": 0.1}, "mae": {"scale": 2},
        "agce": {"a": 0.6, "q": 0.6}, "aul": {"a": 5.5, "q": 3}, "ael": {"a": 2.5},
        "nce+rce": {"alpha": 10, "beta": 0.1}, "nce+mae": {"alpha": 10, "beta": 0.1},
        "nfl+rce": {"alpha": 10, "beta": 0.1, "gamma": 0.5},
        "nce+agce": {"alpha": 10, "beta": 0.1, "a": 1.8, "q": 3},
        "nce+aul": {"alpha": 10, "beta": 0.015, "a": 6, "q": 3}, "nce+ael": {"alpha": 10, "beta": 0.1, "a": 1.5},
        "anl-ce": {"alpha": 10, "beta": 1}, "anl-fl": {"alpha": 10, "beta": 1, "gamma": 0.5},
        "jal-ce": {"alpha": 5, "beta": 1, "a": 20}, "jal-fl": {"alpha": 5, "beta": 1, "a": 20, "gamma": 0.5},
    },
    "webvision": {
        "fl": {"gamma": 0.5}, "gce": {"q": 0.6}, "sce": {"alpha": 10, "beta": 1}, "agce": {"a": 1e-5, "q": 0.5},
        "nce+rce": {"alpha": 50, "beta": 0.1}, "nce+agce": {"alpha": 50, "beta": 0.1, "a": 2.5, "q": 3},
        "anl-ce": {"alpha": 20, "beta": 1}, "anl-fl": {"alpha": 20, "beta": 1, "gamma": 0.5},
        "jal-ce": {"alpha": 50, "beta": 1, "a": 30}, "jal-fl": {"alpha": 50, "beta": 1, "a": 30, "gamma": 0.5},
    },
    "clothing1m": {
        "fl": {"gamma": 0.5}, "gce": {"q": 0.6}, "sce": {"alpha": 10, "beta": 1}, "agce": {"a": 1e-5, "q": 0.5},
        "nce+rce": {"alpha": 10, "beta": 1}, "nce+agce": {"alpha": 50, "beta": 0.1, "a": 2.5, "q": 3},
        "anl-ce": {"alpha": 5, "beta": 0.1}, "anl-fl": {"alpha": 5, "beta": 0.1, "gamma": 0.5},
        "jal-ce": {"alpha": 5, "beta": 0.1, "a": 5}, "jal-fl": {"alpha": 5, "beta": 0.1, "a": 5, "gamma": 0.5},
    },
    "mnist": {  # §2.3: ANL configs, ALFs for the single asymmetric losses
        "sce": {"alpha": 0.01, "beta": 1}, "nce+rce": {"alpha": 1, "beta": 10}, "nce+mae": {"alpha": 1, "beta": 10},
        "nfl+rce": {"alpha": 1, "beta": 10}, "nce+agce": {"alpha": 0, "beta": 1, "a": 4, "q": 0.2},
        "nce+aul": {"alpha": 0, "beta": 1, "a": 3, "q": 0.1}, "nce+ael": {"alpha": 0, "beta": 1, "a": 3.5},
        "anl-ce": {"alpha": 1, "beta": 1}, "ael": {"a": 3.5}, "aul": {"a": 3, "q": 0.1}, "agce": {"a": 4, "q": 0.2},
    },
}  # fmt: skip

# §2.4: (weight_decay, l1) for a baseline, an AMSE loss and an ANL loss.
REGULARIZATION = {
    "cifar10": {"ce": (1e-4, 0), "jal-ce": (0, 5e-5), "anl-ce": (0, 5e-5)},
    "cifar100": {"ce": (1e-5, 0), "jal-fl": (0, 5e-6), "anl-fl": (0, 5e-7)},
    "webvision": {"ce": (3e-5, 0), "jal-ce": (3e-5, 0), "anl-ce": (3e-5, 0)},
    "clothing1m": {"ce": (1e-3, 0), "jal-ce": (1e-3, 0), "anl-ce": (1e-3, 0)},
    "mnist": {"ce": (1e-3, 0), "anl-ce": (0, 1e-6)},
}

K = {"cifar10": 10, "cifar100": 100, "webvision": 50, "clothing1m": 14, "mnist": 10}


def test_presets_are_exactly_the_tabled_datasets():
    assert set(list_presets()) == set(TABLE)


@pytest.mark.parametrize("dataset, loss", [(d, l) for d, losses in TABLE.items() for l in losses])
def test_preset_matches_table(dataset, loss):
    built = create_loss(loss, K[dataset], preset=dataset)
    for key, value in TABLE[dataset][loss].items():
        assert built.hparams[key] == pytest.approx(value), key


@pytest.mark.parametrize("dataset, loss", [(d, l) for d, t in REGULARIZATION.items() for l in t])
def test_regularization(dataset, loss):
    wd, l1 = REGULARIZATION[dataset][loss]
    assert preset_regularization(dataset, loss) == {"weight_decay": pytest.approx(wd), "l1": pytest.approx(l1)}


def test_jal_ce_cifar100_preset_and_override():
    assert create_loss("jal-ce", 100, preset="cifar100").hparams == {"alpha": 5, "beta": 1, "a": 20}
    assert create_loss("jal-ce", 100, preset="cifar100", a=9.0).hparams["a"] == 9.0


def test_unknown_preset_names_it():
    with pytest.raises(KeyError, match="cifar1000"):
        create_loss("jal-ce", 10, preset="cifar1000")
