"""Active losses: cross entropy, focal loss, their normalised forms and GCE (losses-and-noise.md §1.1)."""

from __future__ import annotations

from jal_plugins.domains import NON_NEGATIVE, UNIT
from jal_plugins.losses.base import EPS, Loss, log_probs, number, probs, target_column


class CrossEntropy(Loss):
    """``-log p_y``."""

    def per_sample(self, logits, target):
        return -target_column(log_probs(logits), target)

    def expected(self, logits, target):
        """``−Σ_k t_k log p_k`` for soft targets ``t``, in one pass (see ``base.expected_loss``)."""
        return -(target * log_probs(logits.float())).sum(1)


class FocalLoss(Loss):
    """``-(1 - sg(p_y))^γ log p_y``: the modulating factor is detached, as in every reference repo."""

    domains = {"gamma": NON_NEGATIVE}

    row_params = {"gamma": (-1,)}

    def __init__(self, num_classes, *, reduction="mean", gamma=0.5):
        super().__init__(num_classes, reduction)
        self.gamma = number("gamma", gamma, low=0)
        self.hparams = {"gamma": self.gamma}

    def per_sample(self, logits, target):
        logp_y = target_column(log_probs(logits), target)
        return -((1 - logp_y.detach().exp()) ** self.gamma) * logp_y


class NormalizedCrossEntropy(Loss):
    """``log p_y / Σ_k log p_k``, with the gradient flowing through the denominator too."""

    def per_sample(self, logits, target):
        logp = log_probs(logits)
        return target_column(logp, target) / logp.sum(1)


class NormalizedFocalLoss(Loss):
    """Focal loss of the label over the focal losses of all classes (factors detached, logs live)."""

    domains = {"gamma": NON_NEGATIVE}

    row_params = {"gamma": (-1, 1)}

    def __init__(self, num_classes, *, reduction="mean", gamma=0.5):
        super().__init__(num_classes, reduction)
        self.gamma = number("gamma", gamma, low=0)
        self.hparams = {"gamma": self.gamma}

    def per_sample(self, logits, target):
        logp = log_probs(logits)
        focal = -((1 - logp.detach().exp()) ** self.gamma) * logp
        return target_column(focal, target) / focal.sum(1)


class GeneralizedCrossEntropy(Loss):
    """``(1 - p'_y^q) / q`` with ``p' = clip(p, 1e-8, 1)``."""

    domains = {"q": UNIT}

    row_params = {"q": (-1,)}

    def __init__(self, num_classes, *, reduction="mean", q=0.7):
        super().__init__(num_classes, reduction)
        self.q = number("q", q, low=0, strict_low=True)
        self.hparams = {"q": self.q}

    def per_sample(self, logits, target):
        p_y = target_column(probs(logits).clamp(EPS, 1), target)
        return (1 - p_y**self.q) / self.q


class NormalizedGCE(Loss):
    """``(1 - p'_y^q) / (K - Σ_k p'_k^q)`` with ``p' = clip(p, 1e-7, 1)`` (APL/ALFs)."""

    domains = {"q": UNIT}

    row_params = {"q": (-1, 1)}

    def __init__(self, num_classes, *, reduction="mean", q=0.7):
        super().__init__(num_classes, reduction)
        self.q = number("q", q, low=0, strict_low=True)
        self.hparams = {"q": self.q}

    def per_sample(self, logits, target):
        pq = probs(logits).clamp(1e-7, 1) ** self.q
        return (1 - target_column(pq, target)) / (self.num_classes - pq.sum(1))
