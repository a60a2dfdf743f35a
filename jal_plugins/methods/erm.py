"""``erm``: plain training on every noisy label with the chosen loss (the default everywhere)."""

from __future__ import annotations


def erm(context):
    """Empirical risk minimisation: one network, one pass of the recipe. Cost: one training run.

    With ``a="auto"`` in the loss parameters, JAL's ``a`` is chosen first (``jal_plugins.selection``):
    the candidates train as one stack on each half of the labels, then the winner on all of them.
    """
    from jal_plugins.selection import HeldOut, candidates, wants_selection

    if wants_selection(context.loss_params):
        return HeldOut(context, candidates(context.loss_params, context.config_changes))
    return context.trainer()
