"""Training methods: how the engine uses the noisy labels (plain ERM, Co-teaching, cleanlab pruning)."""

from jal_plugins.methods.base import MethodContext

__all__ = ["MethodContext"]
