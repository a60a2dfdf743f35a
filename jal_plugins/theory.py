"""Asymmetric-loss theory as a tool: the smallest AMSE ``a`` for a noise, and a numerical checker.

A loss ``L`` is *asymmetric* for a weight vector ``w`` (row ``T[y, :]`` of a noise transition matrix)
when the minimiser over the probability simplex of the weighted risk ``R(u) = Σ_k w_k L(u, k)`` is
the one-hot ``e_m`` of the largest weight: then training on noisy labels still points at the clean
class (Zhou et al. 2021; JAL Theorem 4.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _row_ratios(w: np.ndarray, m: int) -> tuple[float, float]:
    """``r = w_m / w_n`` and ``S = Σ_{i≠m} w_i / w_n`` with ``w_n`` the largest other weight."""
    others = np.delete(w, m)
    w_n = others.max()
    return (math.inf, 0.0) if w_n == 0 else (w[m] / w_n, others.sum() / w_n)


def amse_min_a_row(w, m: int | None = None, q: float = 2.0) -> float:
    """Smallest ``a >= 1`` for which AMSE(a, q) is asymmetric for weights ``w`` (clean class ``m``).

    From the separable risk ``(1/K) Σ_k [w_k (a-u_k)^q + (W-w_k) u_k^q]``: for q > 1, ``e_m`` is the
    minimiser iff ``r (a-1)^{q-1} >= a^{q-1} + S`` (q = 2 gives ``a >= (r+S)/(r-1)``); for q <= 1 it
    always is. Returns +inf when clean-label dominance fails (r <= 1).
    """
    from jal_plugins.checks import positive

    q = positive("q", q)
    w = np.asarray(w, dtype=np.float64)
    m = int(np.argmax(w)) if m is None else m
    r, s = _row_ratios(w, m)
    if q <= 1 or r == math.inf:
        return 1.0
    if r <= 1:
        return math.inf
    if q == 2:
        return max(1.0, (r + s) / (r - 1))

    def gap(a):
        return r * (a - 1) ** (q - 1) - a ** (q - 1) - s

    lo, hi = 1.0, 2.0
    while gap(hi) < 0:  # gap < 0 on [1, root) and > 0 after it (see docstring)
        lo, hi = hi, hi * 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gap(mid) < 0 else (lo, mid)
    return hi


def amse_min_a(t, q: float = 2.0) -> float:
    """Smallest ``a`` that makes AMSE asymmetric for every row of the row-stochastic ``T``."""
    from jal_plugins.noise.base import check_transition_matrix

    t = check_transition_matrix(t)
    return max(amse_min_a_row(t[y], y, q) for y in range(t.shape[0]))


@dataclass(frozen=True)
class AsymmetryResult:
    """Verdict of :func:`check_asymmetry`.

    ``margin`` is the smallest excess risk over ``e_m`` among points keeping at most 90 % of the mass
    on the clean class: positive means every such point is worse than ``e_m``, negative means one
    beats it. ``best_point`` is the best point found anywhere on the simplex.
    """

    asymmetric: bool
    margin: float
    risk_at_vertex: float
    best_risk: float
    best_point: np.ndarray


def _risk(loss, points, w):
    """``R(u) = Σ_k w_k L(u, k)`` for each row of ``points`` (probability vectors), differentiably."""
    import torch

    n, k = points.shape
    logits = points.clamp_min(1e-300).log().repeat_interleave(k, 0)
    target = torch.arange(k).repeat(n)
    return (loss(logits, target).view(n, k) * w).sum(1)


def check_asymmetry(loss, weights, *, restarts: int = 8, steps: int = 300, seed: int = 0, tol: float = 1e-7):
    """Decide numerically whether ``loss`` is asymmetric for ``weights``.

    ``loss`` is a registered name or a module built with ``reduction="none"``; it must depend on the
    logits only through the softmax (true of every built-in). Method: evaluate ``R`` at ``e_m``, on
    a dense grid along the edges from ``e_m`` to its strongest competitors, at the vertices, the
    uniform point, ``w`` itself and random Dirichlet points, then refine the best candidates by
    gradient descent in the softmax parametrisation (float64). The verdict is asymmetric when no
    point beats ``R(e_m)`` by more than ``tol`` (relative). Limits: a search, not a proof; a minimiser
    in a narrow basin away from the candidates can be missed, and losses with clamps (RCE, GCE, NNCE)
    are judged on their clamped values.
    """
    import torch

    from jal_plugins import create_loss

    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    if w.ndim != 1 or w.numel() < 2 or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be a non-negative vector of length >= 2, got {weights!r}")
    k, m = w.numel(), int(w.argmax())
    if isinstance(loss, str):
        loss = create_loss(loss, k, reduction="none")
    loss = loss.double()
    gen = torch.Generator().manual_seed(seed)
    eye = torch.eye(k, dtype=torch.float64)

    vertex = eye[m] * (1 - 1e-12) + (1 - eye[m]) * 1e-12 / (k - 1)
    rivals = [int(j) for j in torch.argsort(w, descending=True) if int(j) != m][:10]
    t = torch.logspace(-6, 0, 60, dtype=torch.float64).unsqueeze(1)
    rest = (w * (1 - eye[m])) / (w.sum() - w[m]) if w.sum() > w[m] else (1 - eye[m]) / (k - 1)
    directions = [eye[j] for j in rivals] + [rest, (1 - eye[m]) / (k - 1)]
    edges = torch.cat([(1 - t) * eye[m] + t * d for d in directions])
    dirichlet = torch.distributions.Dirichlet(torch.ones(k, dtype=torch.float64))
    with torch.random.fork_rng(devices=[]):  # Dirichlet takes no generator: keep the global RNG untouched
        torch.manual_seed(seed)
        random_points = dirichlet.sample((200,))
    candidates = torch.cat([edges, eye, torch.full((1, k), 1.0 / k, dtype=torch.float64), (w / w.sum())[None], random_points])

    with torch.no_grad():
        r0 = float(_risk(loss, vertex[None], w)[0])
        risks = _risk(loss, candidates, w)
    starts = candidates[torch.argsort(risks)[:restarts]]
    starts = torch.cat([starts, random_points[torch.randperm(200, generator=gen)[:restarts]]])
    z = starts.clamp_min(1e-12).log().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        _risk(loss, torch.softmax(z, 1), w).sum().backward()
        opt.step()
    with torch.no_grad():
        refined = torch.softmax(z, 1)
        points = torch.cat([candidates, refined])
        all_risks = torch.cat([risks, _risk(loss, refined, w)])
    finite = torch.isfinite(all_risks)
    best = int(torch.where(finite, all_risks, torch.inf).argmin())
    away = finite & (points[:, m] <= 0.9)
    margin = float((all_risks[away] - r0).min()) if away.any() else math.nan
    best_risk = float(all_risks[best])
    return AsymmetryResult(
        asymmetric=best_risk >= r0 - tol * max(1.0, abs(r0)),
        margin=margin,
        risk_at_vertex=r0,
        best_risk=best_risk,
        best_point=points[best].numpy(),
    )


def asymmetric_for_noise(loss, t, **kwargs) -> bool:
    """True when ``loss`` is asymmetric for every distinct row of the row-stochastic ``T``."""
    from jal_plugins.noise.base import check_transition_matrix

    t = check_transition_matrix(t)
    seen = set()
    for y in range(t.shape[0]):
        # Built-in losses treat classes alike, so rows equal up to a permutation share a verdict.
        key = (round(t[y, y], 12), tuple(np.round(np.sort(np.delete(t[y], y)), 12)))
        if key in seen:
            continue
        seen.add(key)
        if np.delete(t[y], y).max() >= t[y, y]:
            return False  # clean-label dominance fails: no loss can recover class y
        w = np.concatenate([[t[y, y]], np.sort(np.delete(t[y], y))[::-1]])
        if not check_asymmetry(loss, w, **kwargs).asymmetric:
            return False
    return True
