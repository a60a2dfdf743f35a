"""The shared base of every loss: per-sample values, then a reduction."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

REDUCTIONS = ("mean", "sum", "none")
# JAL's code clamps with 1e-8 wherever it clamps (APL/ALFs/ANL use 1e-7).
EPS = 1e-8


def number(name: str, value, *, low: float = -math.inf, high: float = math.inf, strict_low: bool = False) -> float:
    """``value`` as a float inside the given range, or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {name}={value!r}")
    too_low = value <= low if strict_low else value < low
    if too_low or value > high:
        bound = f"{name} {'>' if strict_low else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf else "")
        raise ValueError(f"need {bound}, got {name}={value!r}")
    return float(value)


def target_column(values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``values[i, target[i]]`` for every row."""
    return values.gather(1, target.long().unsqueeze(1)).squeeze(1)


class Loss(nn.Module):
    """A loss with per-sample values: subclasses implement ``per_sample(logits, target)``.

    ``forward`` computes in at least float32 (bf16/fp16 logits are upcast: NCE's normaliser and AMSE
    with a large ``a`` are sensitive to half precision) and applies ``reduction``.
    """

    def __init__(self, num_classes: int, reduction: str = "mean"):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.num_classes = num_classes
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

    def __init__(self, num_classes: int, terms: dict[str, tuple[float, Loss]], reduction: str = "mean", **hparams):
        super().__init__(num_classes, reduction)
        self.weights = {name: weight for name, (weight, _) in terms.items()}
        self.terms = nn.ModuleDict({name: loss for name, (_, loss) in terms.items()})
        self.hparams = hparams

    def per_sample(self, logits, target):
        return sum(self.weights[name] * term.per_sample(logits, target) for name, term in self.terms.items())


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, dim=1)


def probs(logits: torch.Tensor) -> torch.Tensor:
    return F.softmax(logits, dim=1)
