"""The AMSE bound and the numerical asymmetry checker."""

import math

import numpy as np
import pytest

from jal_plugins import create_loss, create_noise_model
from jal_plugins.cli import main
from jal_plugins.theory import amse_min_a, amse_min_a_row, asymmetric_for_noise, check_asymmetry


def T(name, k, **params):
    return create_noise_model(name, **params).transition_matrix(k)


@pytest.mark.parametrize(
    "t, q, expected",
    [
        (T("symmetric", 10, rate=0.8), 2, 9.0),
        (T("symmetric", 10, rate=0.8), 3, 4.739),
        (T("pairflip", 10, rate=0.4), 2, 5.0),
        (T("asymmetric", 10, rate=0.4), 2, 5.0),
        (T("symmetric", 100, rate=0.6), 2, 2.538),
    ],
)
def test_paper_examples(t, q, expected):
    assert amse_min_a(t, q=q) == pytest.approx(expected, abs=1e-3)


def test_dominance_failure_and_small_q():
    assert amse_min_a(T("pairflip", 10, rate=0.5)) == math.inf
    assert amse_min_a(T("symmetric", 10, rate=0.8), q=1) == 1.0
    assert amse_min_a(np.eye(5)) == 1.0


@pytest.mark.parametrize("q", [2.0, 3.0, 1.5])
@pytest.mark.parametrize("w", [[0.2] + [0.8 / 9] * 9, [0.6, 0.4, 0, 0], [0.5, 0.3, 0.1, 0.1]])
def test_checker_agrees_with_closed_form_for_amse(w, q):
    bound = amse_min_a_row(w, 0, q)
    for a, expected in ((bound * 0.9, False), (bound * 1.1, True)):
        loss = create_loss("amse", len(w), a=max(a, 1.0), q=q, reduction="none")
        if a < 1:
            continue
        assert check_asymmetry(loss, w).asymmetric is expected, (a, bound)


@pytest.mark.parametrize("w", [[0.2] + [0.8 / 9] * 9, [0.55, 0.45], [0.4, 0.3, 0.2, 0.1]])
def test_checker_verdicts(w):
    assert check_asymmetry("mae", w).asymmetric
    assert check_asymmetry("rce", w).asymmetric
    result = check_asymmetry("ce", w)
    assert not result.asymmetric and result.margin < 0
    # CE's risk is minimised at w itself
    assert np.allclose(result.best_point, np.asarray(w) / np.sum(w), atol=2e-2)


def test_asymmetric_for_noise():
    t = T("symmetric", 10, rate=0.8)
    assert asymmetric_for_noise("mae", t) and not asymmetric_for_noise("ce", t)
    assert not asymmetric_for_noise("jal-ce", T("pairflip", 10, rate=0.5))


def test_bound_cli(capsys):
    assert main(["bound", "--noise", "symmetric:0.8", "--classes", "10", "--losses", "ce", "mae", "amse"]) == 0
    out = capsys.readouterr().out
    assert "smallest a for AMSE (q=2): 9" in out
    assert "asymmetric (noise-tolerant) at default parameters: mae, amse" in out and "not asymmetric: ce" in out


def test_bound_cli_rejects_bad_spec(capsys):
    assert main(["bound", "--noise", "symmetric:lots", "--classes", "10"]) == 2
    assert "symmetric:lots" in capsys.readouterr().err
