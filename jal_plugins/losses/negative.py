"""Normalized negative losses of ANL (Ye et al. 2023; losses-and-noise.md §1.5)."""

from __future__ import annotations

import math

from jal_plugins.domains import NON_NEGATIVE, PROBABILITY
from jal_plugins.losses.base import Loss, log_probs, number, target_column


def _clamped_log_probs(logits, min_prob):
    # Equal in value and gradient to log(clip(p, m, 1)), without forming tiny probabilities first.
    return log_probs(logits).clamp(min=math.log(min_prob))


class NormalizedNegativeCE(Loss):
    """NNCE: ``1 - u_y / Σ_k u_k`` with ``u_k = -ln m + ln clip(p_k, m, 1)``."""

    domains = {"min_prob": PROBABILITY}

    def __init__(self, num_classes, *, reduction="mean", min_prob=1e-8):
        super().__init__(num_classes, reduction)
        self.min_prob = number("min_prob", min_prob, low=0, high=1 / num_classes, strict_low=True)
        self.hparams = {"min_prob": self.min_prob}

    def per_sample(self, logits, target):
        u = _clamped_log_probs(logits, self.min_prob) - math.log(self.min_prob)
        return 1 - target_column(u, target) / u.sum(1)


class NormalizedNegativeFL(Loss):
    """NNFL: ``1 - (A_f - FL_y) / (K·A_f - Σ_k FL_k)`` on clamped log-probabilities, factors detached."""

    domains = {"gamma": NON_NEGATIVE, "min_prob": PROBABILITY}

    def __init__(self, num_classes, *, reduction="mean", gamma=0.5, min_prob=1e-8):
        super().__init__(num_classes, reduction)
        self.gamma = number("gamma", gamma, low=0)
        self.min_prob = number("min_prob", min_prob, low=0, high=1 / num_classes, strict_low=True)
        self.hparams = {"gamma": self.gamma, "min_prob": self.min_prob}

    def per_sample(self, logits, target):
        logp = _clamped_log_probs(logits, self.min_prob)
        focal = -((1 - logp.detach().exp()) ** self.gamma) * logp
        a_f = -((1 - self.min_prob) ** self.gamma) * math.log(self.min_prob)
        return 1 - (a_f - target_column(focal, target)) / (self.num_classes * a_f - focal.sum(1))
