"""cleanlab helpers around ``JALClassifier``: out-of-sample probabilities, label issues, noise matrices."""

from __future__ import annotations

import numpy as np


def _estimator(estimator):
    if estimator is not None:
        return estimator
    from jal_plugins.adapters.sklearn import JALClassifier

    return JALClassifier(random_state=0)


def cross_val_pred_probs(estimator, X, y, *, cv: int = 5, seed: int | None = None) -> np.ndarray:
    """Out-of-sample ``predict_proba`` of every row by stratified K-fold (what cleanlab expects)."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    return cross_val_predict(clone(_estimator(estimator)), X, y, cv=folds, method="predict_proba")


def find_label_issues(X, y, *, estimator=None, cv: int = 5, seed: int | None = None, **kwargs) -> np.ndarray:
    """cleanlab's ``filter.find_label_issues`` on cross-validated probabilities (a boolean mask by default)."""
    from cleanlab.filter import find_label_issues as cleanlab_find

    pred_probs = cross_val_pred_probs(estimator, X, y, cv=cv, seed=seed)
    return cleanlab_find(np.asarray(y), pred_probs, **kwargs)


def estimate_transition_matrix(X=None, y=None, *, estimator=None, cv: int = 5, seed: int | None = None, pred_probs=None):
    """Row-stochastic ``T[true, noisy]`` from cleanlab's confident joint (labels must be 0..K-1)."""
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities

    from jal_plugins.noise import from_cleanlab

    if pred_probs is None:
        pred_probs = cross_val_pred_probs(estimator, X, y, cv=cv, seed=seed)
    _, noise_matrix, _, _ = estimate_py_and_noise_matrices_from_probabilities(np.asarray(y), pred_probs)
    return from_cleanlab(noise_matrix)
