"""Asymmetric losses: AGCE, AUL, AEL (ALFs, §1.3) and AMSE, the passive half of JAL (§1.6)."""

from __future__ import annotations

import torch.nn.functional as F

from jal_plugins.domains import ABOVE_ONE, AT_LEAST_ONE, POSITIVE
from jal_plugins.losses.base import Loss, number, probs, target_column


class AsymmetricGCE(Loss):
    """``((a+1)^q - (a+p_y)^q) / q``."""

    domains = {"a": POSITIVE, "q": POSITIVE}

    row_params = {"a": (-1,), "q": (-1,)}

    def __init__(self, num_classes, *, reduction="mean", a=0.6, q=0.6):
        super().__init__(num_classes, reduction)
        self.a = number("a", a, low=0, strict_low=True)
        self.q = number("q", q, low=0, strict_low=True)
        self.hparams = {"a": self.a, "q": self.q}

    def per_sample(self, logits, target):
        p_y = target_column(probs(logits), target)
        return ((self.a + 1) ** self.q - (self.a + p_y) ** self.q) / self.q


class AsymmetricUnhingedLoss(Loss):
    """``((a-p_y)^q - (a-1)^q) / q`` for any number of classes."""

    domains = {"a": ABOVE_ONE, "q": POSITIVE}

    row_params = {"a": (-1,), "q": (-1,)}

    def __init__(self, num_classes, *, reduction="mean", a=5.5, q=3.0):
        super().__init__(num_classes, reduction)
        self.a = number("a", a, low=1, strict_low=True)
        self.q = number("q", q, low=0, strict_low=True)
        self.hparams = {"a": self.a, "q": self.q}

    def per_sample(self, logits, target):
        p_y = target_column(probs(logits), target)
        return ((self.a - p_y) ** self.q - (self.a - 1) ** self.q) / self.q


class AsymmetricExponentialLoss(Loss):
    """``exp(-p_y / a)``."""

    domains = {"a": POSITIVE}

    row_params = {"a": (-1,)}

    def __init__(self, num_classes, *, reduction="mean", a=2.5):
        super().__init__(num_classes, reduction)
        self.a = number("a", a, low=0, strict_low=True)
        self.hparams = {"a": self.a}

    def per_sample(self, logits, target):
        return (-target_column(probs(logits), target) / self.a).exp()


class AsymmetricMSE(Loss):
    """AMSE: ``(1/K) Σ_k |p_k - a·e_{y,k}|^q`` (q = 2 is the paper's ``(1/K)‖a·e_y - p‖²``).

    The absolute value is taken before the power, so fractional ``q`` never gives NaN.
    """

    domains = {"a": AT_LEAST_ONE, "q": POSITIVE}

    row_params = {"a": (-1, 1)}  # q chooses a branch, so it stays one number per call

    def __init__(self, num_classes, *, reduction="mean", a=30.0, q=2.0):
        super().__init__(num_classes, reduction)
        self.a = number("a", a, low=1)
        self.q = number("q", q, low=0, strict_low=True)
        self.hparams = {"a": self.a, "q": self.q}

    def per_sample(self, logits, target):
        onehot = F.one_hot(target.long(), self.num_classes).to(logits.dtype)
        diff = probs(logits) - self.a * onehot
        return (diff.square() if self.q == 2 else diff.abs() ** self.q).mean(1)
