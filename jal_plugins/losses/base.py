"""The shared base of every loss: per-sample values, then a reduction."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from jal_plugins.checks import choice, integer, number

REDUCTIONS = ("mean", "sum", "none")
# JAL's code clamps with 1e-8 wherever it clamps (APL/ALFs/ANL use 1e-7).
EPS = 1e-8
__all__ = ["EPS", "Loss", "REDUCTIONS", "WeightedSum", "expected_loss", "log_probs", "number", "probs", "target_column"]


def target_column(values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``values[i, target[i]]`` for every row."""
    return values.gather(1, target.long().unsqueeze(1)).squeeze(1)


class Loss(nn.Module):
    """A loss with per-sample values: subclasses implement ``per_sample(logits, target)``.

    ``forward`` computes in at least float32 (bf16/fp16 logits are upcast: NCE's normaliser and AMSE
    with a large ``a`` are sensitive to half precision) and applies ``reduction``.
    ``row_params`` names the hyperparameters ``per_sample`` also accepts as one value per row, with
    their per-row shape, so a stack can compute runs that differ only in them in one call
    (``jal_plugins.losses.rows``); such a class keeps every hyperparameter in ``hparams``.
    """

    row_params: dict[str, tuple[int, ...]] = {}

    def __init__(self, num_classes: int, reduction: str = "mean"):
        super().__init__()
        self.num_classes = integer("num_classes", num_classes, low=2)
        choice("reduction", reduction, REDUCTIONS)
        self.reduction = reduction
        self.hparams: dict[str, float] = {}

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"{type(self).__name__} expects logits of shape (batch, {self.num_classes}), got {tuple(logits.shape)}"
            )
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        if target.is_floating_point():
            target = _integral(target)
        losses = self.per_sample(logits, target)
        if self.reduction == "mean":
            return losses.mean()
        if self.reduction == "sum":
            return losses.sum()
        return losses

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.hparams.items())


class WeightedSum(Loss):
    """``Σ weight_i · loss_i``; since every term is a batch mean, weights multiply the means."""

    row_params = {"weights": (-1,)}

    def structure(self) -> tuple:
        """Its terms (visited on their own) and the names of its weights: ``hparams`` only describe."""
        return tuple(self.weights)

    def __init__(self, num_classes: int, terms: dict[str, tuple[float, Loss]], reduction: str = "mean", **hparams):
        super().__init__(num_classes, reduction)
        self.weights = {name: weight for name, (weight, _) in terms.items()}
        self.terms = nn.ModuleDict({name: loss for name, (_, loss) in terms.items()})
        self.hparams = hparams

    def per_sample(self, logits, target):
        return sum(self.weights[name] * term.per_sample(logits, target) for name, term in self.terms.items())


def _integral(target: torch.Tensor) -> torch.Tensor:
    """Float class targets as integers; a fractional one is an error, not a truncation (3.7 is not 3)."""
    bad = (target != target.round()).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise ValueError(f"loss targets must be class indices, found {target[i].item()!r} at position {i}")
    return target.long()


def expected_loss(loss, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ``Σ_k t_k·ℓ(logits, k)``: a per-sample loss against soft targets ``t`` (rows of ``target``).

    The expectation of the loss over the target distribution: linear in ``t``, equal to ``ℓ(logits, y)``
    for a one-hot ``t``, and for CE exactly the soft-target cross-entropy ``−Σ_k t_k log p_k``. So any
    registered loss can score mixed or refined labels. A loss with an ``expected(logits, target)``
    method computes it in closed form (CE does); any other is evaluated against every class, which
    costs K loss evaluations per sample (100 for CIFAR-100).
    """
    closed = getattr(loss, "expected", None)
    if closed is not None:
        return closed(logits, target)
    n, k = logits.shape
    classes = torch.arange(k, device=logits.device).repeat(n)
    return (loss(logits.repeat_interleave(k, 0), classes).view(n, k) * target).sum(1)


# On a CPU, a softmax of a stack's many rows over fewer than 16 classes runs 3-5x slower over the
# last axis than over the first axis of the transposed logits, which gives the same values
# (benchmarks/softmax_axis.py); for one run's batch the two are alike.
SHORT_AXIS, MANY_ROWS = 16, 256


def _softmax(fn, logits: torch.Tensor) -> torch.Tensor:
    if logits.device.type == "cpu" and logits.shape[1] < SHORT_AXIS and logits.shape[0] >= MANY_ROWS:
        return fn(logits.t(), dim=0).t()
    return fn(logits, dim=1)


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise log-softmax of ``(N, K)`` logits."""
    return _softmax(F.log_softmax, logits)


def probs(logits: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax of ``(N, K)`` logits."""
    return _softmax(F.softmax, logits)
