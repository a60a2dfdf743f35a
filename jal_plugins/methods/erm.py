"""``erm``: plain training on every noisy label with the chosen loss (the default everywhere)."""

from __future__ import annotations


def erm(context):
    """Empirical risk minimisation: one network, one pass of the recipe. Cost: one training run."""
    return context.trainer()
