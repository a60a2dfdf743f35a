"""Every catalogue loss against an independent re-statement of losses-and-noise.md §1."""

import math

import pytest
import torch

import jal_plugins
from jal_plugins import create_loss

LN_1E4 = math.log(1e-4)


def _parts(z, y, k):
    p = torch.softmax(z, 1)
    logp = torch.log(p)  # deliberately not log_softmax: another code path
    e = torch.nn.functional.one_hot(y, k).to(z.dtype)
    return p, logp, e, (p * e).sum(1), (logp * e).sum(1)


def ref_ce(z, y, k):
    return -_parts(z, y, k)[4]


def ref_fl(z, y, k, gamma=0.5):
    _, _, _, py, logpy = _parts(z, y, k)
    return -((1 - py.detach()) ** gamma) * logpy


def ref_nce(z, y, k):
    _, logp, _, _, logpy = _parts(z, y, k)
    return (-logpy) / (-logp.sum(1))


def ref_nfl(z, y, k, gamma=0.5):
    p, logp, _, py, logpy = _parts(z, y, k)
    return (-((1 - py.detach()) ** gamma) * logpy) / (-((1 - p.detach()) ** gamma) * logp).sum(1)


def ref_gce(z, y, k, q=0.7):
    p, _, e, _, _ = _parts(z, y, k)
    pc = torch.clamp(p, 1e-8, 1)
    return (1 - (pc * e).sum(1) ** q) / q


def ref_ngce(z, y, k, q=0.7):
    p, _, e, _, _ = _parts(z, y, k)
    pc = torch.clamp(p, 1e-7, 1)
    return (1 - (pc * e).sum(1) ** q) / (k - (pc**q).sum(1))


def ref_mae(z, y, k, scale=2.0):
    return scale * (1 - _parts(z, y, k)[3])


def ref_rce(z, y, k):
    p, _, e, _, _ = _parts(z, y, k)
    return -(torch.clamp(p, 1e-8, 1) * torch.log(torch.clamp(e, 1e-4, 1))).sum(1)


def ref_mse(z, y, k):
    p, _, e, _, _ = _parts(z, y, k)
    return ((p - e) ** 2).sum(1) / k


def ref_agce(z, y, k, a=0.6, q=0.6):
    py = _parts(z, y, k)[3]
    return ((a + 1) ** q - (a + py) ** q) / q


def ref_aul(z, y, k, a=5.5, q=3.0):
    py = _parts(z, y, k)[3]
    return ((a - py) ** q - (a - 1) ** q) / q


def ref_ael(z, y, k, a=2.5):
    return torch.exp(-_parts(z, y, k)[3] / a)


def ref_amse(z, y, k, a=30.0, q=2.0):
    p, _, e, _, _ = _parts(z, y, k)
    return (torch.abs(a * e - p) ** q).sum(1) / k


def ref_nnce(z, y, k, min_prob=1e-8):
    p, _, e, _, _ = _parts(z, y, k)
    u = -math.log(min_prob) + torch.log(torch.clamp(p, min_prob, 1))
    return 1 - (u * e).sum(1) / u.sum(1)


def ref_nnfl(z, y, k, gamma=0.5, min_prob=1e-8):
    _, logp, e, _, _ = _parts(z, y, k)
    lt = torch.maximum(logp, torch.full_like(logp, math.log(min_prob)))
    pi = torch.exp(lt)
    a_f = -((1 - min_prob) ** gamma) * math.log(min_prob)
    fl = -((1 - pi.detach()) ** gamma) * lt
    return 1 - (a_f - (fl * e).sum(1)) / (k * a_f - fl.sum(1))


def combo(active, beta_term, alpha, beta):
    return lambda z, y, k: alpha * active(z, y, k) + beta * beta_term(z, y, k)


# name -> (reference per-sample function, parameters passed to both)
CASES = {
    "ce": (ref_ce, {}),
    "fl": (lambda z, y, k: ref_fl(z, y, k, 2.0), {"gamma": 2.0}),
    "gce": (lambda z, y, k: ref_gce(z, y, k, 0.5), {"q": 0.5}),
    "sce": (combo(ref_ce, ref_rce, 0.1, 1.0), {}),
    "mae": (ref_mae, {}),
    "rce": (ref_rce, {}),
    "mse": (ref_mse, {}),
    "nce": (ref_nce, {}),
    "nfl": (ref_nfl, {}),
    "ngce": (ref_ngce, {}),
    "nce+rce": (combo(ref_nce, ref_rce, 10.0, 0.1), {"alpha": 10.0, "beta": 0.1}),
    "nfl+rce": (combo(ref_nfl, ref_rce, 1.0, 1.0), {}),
    "nce+mae": (combo(ref_nce, lambda z, y, k: ref_mae(z, y, k, 1.0), 1.0, 3.0), {"beta": 3.0}),
    "agce": (ref_agce, {}),
    "aul": (ref_aul, {}),
    "ael": (ref_ael, {}),
    "nce+agce": (combo(ref_nce, lambda z, y, k: ref_agce(z, y, k, 6.0, 1.5), 1.0, 4.0), {}),
    "nce+aul": (combo(ref_nce, lambda z, y, k: ref_aul(z, y, k, 6.3, 1.5), 1.0, 4.0), {}),
    "nce+ael": (combo(ref_nce, lambda z, y, k: ref_ael(z, y, k, 5.0), 1.0, 4.0), {}),
    "nnce": (ref_nnce, {}),
    "nnfl": (lambda z, y, k: ref_nnfl(z, y, k, 0.5, 1e-7), {"min_prob": 1e-7}),
    "anl-ce": (combo(ref_nce, ref_nnce, 5.0, 5.0), {}),
    "anl-fl": (combo(ref_nfl, ref_nnfl, 5.0, 5.0), {}),
    "amse": (lambda z, y, k: ref_amse(z, y, k, 10.0, 2.0), {"a": 10.0}),
    "jal-ce": (combo(ref_nce, ref_amse, 1.0, 1.0), {}),
    "jal-fl": (combo(ref_nfl, lambda z, y, k: ref_amse(z, y, k, 20.0), 5.0, 1.0), {"alpha": 5.0, "a": 20.0}),
}


def test_every_builtin_loss_has_a_reference_case():
    builtin = {n for n, dist in jal_plugins.list_losses().items() if dist == "jal-plugins"}
    assert builtin == set(CASES)


def _reduce(values, reduction):
    return {"mean": values.mean(), "sum": values.sum(), "none": values}[reduction]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("k", [10, 100])
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_reference_values_and_gradients(name, k, reduction):
    ref, params = CASES[name]
    gen = torch.Generator().manual_seed(k)
    z = (torch.randn(64, k, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    y = torch.randint(0, k, (64,), generator=gen)
    loss = create_loss(name, k, reduction=reduction, **params)
    got = loss(z, y)
    want = _reduce(ref(z, y, k), reduction)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    g_got, g_want = torch.autograd.grad(got.sum(), z)[0], torch.autograd.grad(want.sum(), z)[0]
    torch.testing.assert_close(g_got, g_want, rtol=1e-7, atol=1e-10)


def test_amse_fractional_q_has_no_nan():
    z = torch.randn(32, 10, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 10, (32,))
    got = create_loss("amse", 10, a=2.0, q=1.5, reduction="none")(z, y)
    torch.testing.assert_close(got, ref_amse(z, y, 10, 2.0, 1.5))
    assert torch.isfinite(torch.autograd.grad(got.sum(), z)[0]).all()


def test_aul_works_for_100_classes():
    z, y = torch.randn(8, 100), torch.full((8,), 99)
    assert torch.isfinite(create_loss("nce+aul", 100, preset="cifar100")(z, y))


@pytest.mark.parametrize("name", sorted(CASES))
def test_finite_for_huge_logits(name):
    z = torch.randn(16, 10) * 1e4
    z[0] = 0
    z[1, 3] = 1e4
    z = z.requires_grad_(True)
    y = torch.arange(16) % 10
    value = create_loss(name, 10)(z, y)
    (grad,) = torch.autograd.grad(value, z)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtypes(dtype):
    z, y = torch.randn(16, 10).to(dtype), torch.randint(0, 10, (16,))
    out = create_loss("jal-ce", 10, reduction="none")(z, y)
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    torch.testing.assert_close(out.double(), ref_nce(z.double(), y, 10) + ref_amse(z.double(), y, 10), rtol=1e-5, atol=1e-5)


def test_lookup_is_case_and_separator_insensitive():
    a = create_loss("JAL_CE", 10)
    b = create_loss("nce+amse", 10)
    assert type(a) is type(b) and a.hparams == b.hparams


@pytest.mark.parametrize(
    "name, params, fragment",
    [
        ("amse", {"a": 0.5}, "a=0.5"),
        ("jal-ce", {"a": 0.99}, "a=0.99"),
        ("jal-fl", {"a": -3}, "a=-3"),
        ("gce", {"q": 0}, "q=0"),
        ("agce", {"q": -1}, "q=-1"),
        ("aul", {"a": 1.0}, "a=1.0"),
        ("nce+rce", {"alpha": -1}, "alpha=-1"),
        ("sce", {"beta": -0.5}, "beta=-0.5"),
        ("fl", {"gamma": -1}, "gamma=-1"),
        ("jal-ce", {"a": float("nan")}, "a=nan"),
        ("jal-ce", {"b": 1}, "'b'"),
        ("ce", {"gamma": 1}, "'gamma'"),
    ],
)
def test_invalid_parameters_name_the_value(name, params, fragment):
    with pytest.raises(ValueError, match=fragment.replace("+", r"\+").replace(".", r"\.")):
        create_loss(name, 10, **params)


def test_unknown_loss_is_a_keyerror_with_suggestions():
    with pytest.raises(KeyError) as info:
        create_loss("jal-cee", 10)
    assert "jal-cee" in str(info.value) and "did you mean 'jal-ce'" in str(info.value)


@pytest.mark.parametrize("bad", [{"num_classes": 1}, {"num_classes": 2.5}, {"reduction": "avg"}])
def test_bad_construction(bad):
    kwargs = {"num_classes": 10, **bad}
    with pytest.raises(ValueError, match=repr(bad.get("reduction", bad.get("num_classes")))):
        create_loss("ce", kwargs.pop("num_classes"), **kwargs)


def test_wrong_logit_width_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(batch, 10\).*\(4, 5\)"):
        create_loss("ce", 10)(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))


# -- several runs' losses in one call (jal_plugins.losses.rows) -------------------------------------
ROW_GRIDS = [
    ("jal-ce", [{"a": 5.0}, {"a": 30.0, "beta": 0.5}, {"a": 10.0, "alpha": 2.0}]),
    ("jal-fl", [{"a": 3.0, "gamma": 0.2}, {"a": 20.0, "gamma": 0.7}]),
    ("gce", [{"q": 0.3}, {"q": 0.7}, {"q": 0.9}]),
    ("nce+agce", [{"a": 2.0, "q": 1.5}, {"a": 6.0, "q": 0.5, "beta": 1.0}]),
    ("nce+aul", [{"a": 3.0, "q": 1.5}, {"a": 6.3, "q": 3.0}]),
    ("nce+ael", [{"a": 2.0}, {"a": 5.0, "alpha": 0.5}]),
    ("fl", [{"gamma": 0.0}, {"gamma": 2.0}]),
    ("mae", [{"scale": 1.0}, {"scale": 2.0}]),
    ("ngce", [{"q": 0.1}, {"q": 0.7}]),
    ("sce", [{"alpha": 0.1, "beta": 1.0}, {"alpha": 6.0, "beta": 0.1}]),
]


@pytest.mark.parametrize("name, grid", ROW_GRIDS, ids=[g[0] for g in ROW_GRIDS])
def test_runs_that_differ_in_row_params_share_one_call_with_equal_values_and_gradients(name, grid):
    from jal_plugins.losses.rows import RowLoss, loss_groups

    losses = [create_loss(name, 10, reduction="none", **params) for params in grid]
    assert len(loss_groups(losses, "cpu")) == 1  # one call for every run
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(len(grid) * 6, 10, generator=gen, dtype=torch.float64).requires_grad_()
    target = torch.randint(0, 10, (len(grid) * 6,), generator=gen)
    together = RowLoss(losses)(logits, target)
    (grad_together,) = torch.autograd.grad(together.sum(), logits)
    alone = torch.cat([loss(logits[i * 6 : (i + 1) * 6], target[i * 6 : (i + 1) * 6]) for i, loss in enumerate(losses)])
    (grad_alone,) = torch.autograd.grad(alone.sum(), logits)
    torch.testing.assert_close(together, alone)
    torch.testing.assert_close(grad_together, grad_alone)


def test_losses_that_differ_otherwise_keep_separate_calls():
    from jal_plugins.losses.rows import loss_groups

    mixed = [create_loss(n, 10, reduction="none", **p) for n, p in
             [("ce", {}), ("jal-ce", {"a": 5.0}), ("jal-ce", {"a": 9.0}), ("nnce", {"min_prob": 1e-8}), ("nnce", {"min_prob": 1e-7}),
              ("amse", {"a": 5.0, "q": 2.0}), ("amse", {"a": 5.0, "q": 3.0})]]  # fmt: skip
    groups = loss_groups(mixed, "cpu")
    # ce | both jal-ce | nnce 1e-8 | nnce 1e-7 (min_prob is not row-wise) | amse q=2 | amse q=3 (q picks a branch)
    assert [list(range(len(mixed)))[g] for g, _ in groups] == [[0], [1, 2], [3], [4], [5], [6]]


@pytest.mark.parametrize("k", [2, 10, 100])
def test_the_softmax_of_a_stacks_many_rows_is_the_usual_one(k):
    from torch.nn import functional as F

    from jal_plugins.losses.base import log_probs, probs

    z = (torch.randn(1024, k, generator=torch.Generator().manual_seed(k)) * 3).requires_grad_(True)
    for ours, usual in ((log_probs, F.log_softmax), (probs, F.softmax)):
        grad = torch.randn(1024, k, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(ours(z), usual(z, dim=1))
        ours_grad, usual_grad = (torch.autograd.grad(f(z), z, grad)[0] for f in (ours, lambda t: usual(t, dim=1)))
        torch.testing.assert_close(ours_grad, usual_grad)
