"""Measure realised noise and convert between our and cleanlab's noise-matrix conventions."""

from __future__ import annotations

import numpy as np

from jal_plugins.noise.base import check_labels, check_transition_matrix


def realized_transition_matrix(clean, noisy, num_classes: int | None = None) -> np.ndarray:
    """Row-stochastic ``T[i, j]`` = fraction of clean class i labelled j (rows of absent classes: e_i)."""
    clean, k = check_labels(clean, num_classes)
    noisy, _ = check_labels(noisy, k)
    if clean.shape != noisy.shape:
        raise ValueError(f"clean has {clean.size} labels but noisy has {noisy.size}")
    counts = np.zeros((k, k))
    np.add.at(counts, (clean, noisy), 1)
    totals = counts.sum(1, keepdims=True)
    return np.where(totals > 0, counts / np.maximum(totals, 1), np.eye(k))


def noise_rates(clean, noisy, num_classes: int | None = None) -> np.ndarray:
    """Per-class fraction of wrong labels."""
    return 1 - np.diag(realized_transition_matrix(clean, noisy, num_classes))


def to_cleanlab(t) -> np.ndarray:
    """Our row-stochastic ``T[true, noisy]`` as cleanlab's column-stochastic ``noise_matrix[noisy, true]``."""
    return check_transition_matrix(t).T.copy()


def from_cleanlab(noise_matrix) -> np.ndarray:
    """cleanlab's ``noise_matrix[noisy, true]`` (columns sum to 1) as our ``T[true, noisy]``."""
    return check_transition_matrix(np.asarray(noise_matrix, dtype=np.float64).T)
