"""Training methods: how the engine uses the noisy labels (ERM, co-teaching, cleanlab pruning, DivideMix, ELR)."""

from jal_plugins.methods.base import MethodContext

__all__ = ["MethodContext"]
