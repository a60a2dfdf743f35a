"""The noisy-digits split of the estimator benchmarks: pixels in [0, 1], 500 rows held out for testing."""

from __future__ import annotations

import numpy as np


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, train rows, test rows)`` of scikit-learn's digits: the same 500 test rows for every script."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(y))
    return x / 16.0, y, idx[500:], idx[:500]
