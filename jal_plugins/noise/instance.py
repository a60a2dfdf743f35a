"""Noise that depends on the sample: Xia et al.'s part-dependent generator and label files."""

from __future__ import annotations

import numpy as np

from jal_plugins.checks import finite_array, positive
from jal_plugins.labelfiles import read_labels
from jal_plugins.noise.base import check_labels, check_rate, generator


class InstanceDependent:
    """Xia et al. (2020) instance-dependent noise; needs ``features`` (one row per sample).

    Per sample a flip rate ``q_i ~ TruncNormal(rate, std, [0, 1])``; the destination follows
    ``softmax(x_i · W[y_i])`` over the other classes, with ``W ~ N(0, 1)`` of shape (K, D, K).
    """

    needs_features = True  # the runner passes the flattened, normalised training inputs

    def __init__(self, rate: float = 0.4, std: float = 0.1):
        self.rate = check_rate(rate)
        self.std = positive("std", std)

    def transition_matrix(self, num_classes):
        return None

    def apply(self, labels, num_classes=None, seed=None, features=None):
        from scipy.stats import truncnorm

        labels, k = check_labels(labels, num_classes)
        if features is None:
            raise ValueError("instance-dependent noise needs features= (one row per sample)")
        x = finite_array("features", np.asarray(features, dtype=np.float32).reshape(len(features), -1))
        if x.shape[0] != labels.size:
            raise ValueError(f"features has {x.shape[0]} rows but there are {labels.size} labels")
        rng = generator(seed)
        lo, hi = (0 - self.rate) / self.std, (1 - self.rate) / self.std
        flip = truncnorm.rvs(lo, hi, loc=self.rate, scale=self.std, size=labels.size, random_state=rng)
        w = rng.standard_normal((k, x.shape[1], k)).astype(np.float32)
        noisy = labels.copy()
        for c in range(k):
            rows = np.flatnonzero(labels == c)
            if not rows.size:
                continue
            v = (x[rows] @ w[c]).astype(np.float64)
            v[:, c] = -np.inf
            p = np.exp(v - v.max(1, keepdims=True))
            p *= (flip[rows] / p.sum(1))[:, None]
            p[:, c] += 1 - flip[rows]
            u = rng.random(rows.size)
            noisy[rows] = np.minimum((u[:, None] > np.cumsum(p, 1)).sum(1), k - 1)
        return noisy

    def __repr__(self):
        return f"InstanceDependent(rate={self.rate!r}, std={self.std!r})"


class LabelFile:
    """Noisy labels read from a file (.npz/.npy/CIFAR-N .pt), e.g. the JAL paper's IDN label files."""

    def __init__(self, path, key: str | None = None):
        self.path = str(path)
        self.key = key

    def transition_matrix(self, num_classes):
        return None

    def apply(self, labels, num_classes=None, seed=None, features=None):
        labels, k = check_labels(labels, num_classes)
        noisy = read_labels(self.path, self.key)
        if noisy.shape != labels.shape:
            raise ValueError(
                f"label file {self.path!r} (key {self.key!r}) has {noisy.size} labels, expected {labels.size}"
            )
        check_labels(noisy, k)
        return noisy

    def __repr__(self):
        return f"LabelFile(path={self.path!r}, key={self.key!r})"
