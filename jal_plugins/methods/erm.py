"""``erm``: plain training on every noisy label with the chosen loss (the default everywhere)."""

from __future__ import annotations


def erm(context):
    """Empirical risk minimisation: one network, one pass of the recipe. Cost: one training run.

    A run that searches its loss parameters first (``a=auto``) is a ``selection.Selections``: the
    job says so, and the runner and the estimator train it as one.
    """
    return context.trainer()
