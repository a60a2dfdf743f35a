"""Robust losses: one module per family over the small base in ``base``."""

from jal_plugins.losses.base import Loss, WeightedSum

__all__ = ["Loss", "WeightedSum"]
