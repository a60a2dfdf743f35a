"""Passive (symmetric) losses: MAE, RCE and MSE (losses-and-noise.md §1.2)."""

from __future__ import annotations

import math

import torch.nn.functional as F

from jal_plugins.domains import POSITIVE
from jal_plugins.losses.base import EPS, Loss, number, probs, target_column

# RCE clamps the one-hot target at 1e-4, so every wrong class costs -log(1e-4) = 9.2103.
RCE_A = -math.log(1e-4)


class MeanAbsoluteError(Loss):
    """``scale · (1 - p_y)``; the JAL/ALFs default scale 2 equals ``‖e_y - p‖₁``."""

    domains = {"scale": POSITIVE}

    row_params = {"scale": (-1,)}

    def __init__(self, num_classes, *, reduction="mean", scale=2.0):
        super().__init__(num_classes, reduction)
        self.scale = number("scale", scale, low=0, strict_low=True)
        self.hparams = {"scale": self.scale}

    def per_sample(self, logits, target):
        return self.scale * (1 - target_column(probs(logits), target))


class ReverseCrossEntropy(Loss):
    """``-Σ_k clip(p_k, 1e-8, 1) · log clip(e_y, 1e-4, 1)_k``."""

    def per_sample(self, logits, target):
        p = probs(logits).clamp(EPS, 1)
        return RCE_A * (p.sum(1) - target_column(p, target))


class MeanSquaredError(Loss):
    """``(1/K) ‖p - e_y‖²``."""

    def per_sample(self, logits, target):
        onehot = F.one_hot(target.long(), self.num_classes).to(logits.dtype)
        return (probs(logits) - onehot).square().mean(1)
