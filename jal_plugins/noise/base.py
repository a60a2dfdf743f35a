"""Shared checks and the base class of noise models."""

from __future__ import annotations

import numpy as np

from jal_plugins import checks


def check_rate(rate) -> float:
    return checks.probability("rate", rate)


def check_labels(labels, num_classes: int | None = None) -> tuple[np.ndarray, int]:
    """Labels as a 1-D int64 array inside 0..K-1, and K (inferred as max + 1 when not given)."""
    return checks.class_labels("labels", labels, num_classes)


def check_transition_matrix(matrix, num_classes: int | None = None) -> np.ndarray:
    """A square row-stochastic matrix, or a ValueError naming the offending row."""
    t = np.asarray(matrix, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"transition matrix must be square, got shape {t.shape}")
    if num_classes is not None and t.shape[0] != num_classes:
        raise ValueError(f"transition matrix is {t.shape[0]}x{t.shape[0]} but there are {num_classes} classes")
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise ValueError("transition matrix has negative or non-finite entries")
    sums = t.sum(1)
    bad = np.flatnonzero(np.abs(sums - 1) > 1e-6)
    if bad.size:
        raise ValueError(f"transition matrix is not row-stochastic: row {bad[0]} sums to {sums[bad[0]]:.6g}")
    return t


def generator(seed) -> np.random.Generator:
    """A private NumPy generator: never the global RNG."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None:
        checks.integer("seed", seed, low=0)
    return np.random.default_rng(seed)


def flip_exact(labels: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The JAL/ANL generator: exactly ``trunc(T[i, j]·n_i)`` samples of class i move to j (j != i).

    For each class, in order, targets are drawn without replacement from the samples not yet moved.
    """
    noisy = labels.copy()
    for i in range(t.shape[0]):
        pool = np.flatnonzero(labels == i)
        counts = (t[i] * pool.size).astype(np.int64)
        for j in np.flatnonzero(counts):
            if j == i:
                continue
            chosen = rng.choice(pool, counts[j], replace=False)
            pool = np.setdiff1d(pool, chosen)
            noisy[chosen] = j
    return noisy


def flip_per_sample(labels: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each label independently drawn from its row of ``T``."""
    cumulative = np.cumsum(t, axis=1)
    u = rng.random(labels.size)
    noisy = (u[:, None] > cumulative[labels]).sum(1)
    return np.minimum(noisy, t.shape[0] - 1).astype(np.int64)


class NoiseModel:
    """Base of the transition-matrix noise models: subclasses give ``transition_matrix(K)``."""

    exact = True

    def transition_matrix(self, num_classes: int) -> np.ndarray | None:
        raise NotImplementedError

    def apply(self, labels, num_classes=None, seed=None, features=None) -> np.ndarray:
        """Noisy copy of ``labels`` (int64); ``seed`` is an int or a ``numpy.random.Generator``."""
        labels, k = check_labels(labels, num_classes)
        t = self.transition_matrix(k)
        flip = flip_exact if self.exact else flip_per_sample
        return flip(labels, t, generator(seed))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"
