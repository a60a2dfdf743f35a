"""The built-in loss catalogue: single losses plus the α·active + β·passive combinations.

Default hyperparameters are the JAL code's CIFAR-10 values; presets in ``registry.toml`` hold the rest.
"""

from __future__ import annotations

from jal_plugins.domains import ABOVE_ONE, AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, PROBABILITY, declare
from jal_plugins.losses.active import (
    CrossEntropy,
    FocalLoss,
    GeneralizedCrossEntropy,
    NormalizedCrossEntropy,
    NormalizedFocalLoss,
    NormalizedGCE,
)
from jal_plugins.losses.asymmetric import AsymmetricExponentialLoss, AsymmetricGCE, AsymmetricMSE, AsymmetricUnhingedLoss
from jal_plugins.losses.base import Loss, WeightedSum, number
from jal_plugins.losses.negative import NormalizedNegativeCE, NormalizedNegativeFL
from jal_plugins.losses.passive import MeanAbsoluteError, MeanSquaredError, ReverseCrossEntropy


def _pair(num_classes, reduction, alpha, active: Loss, beta, passive: Loss, **hparams) -> WeightedSum:
    alpha, beta = number("alpha", alpha, low=0), number("beta", beta, low=0)
    return WeightedSum(
        num_classes,
        {"active": (alpha, active), "passive": (beta, passive)},
        reduction,
        alpha=alpha,
        beta=beta,
        **hparams,
    )


@declare(alpha=NON_NEGATIVE, beta=POSITIVE)
def sce(num_classes, *, reduction="mean", alpha=0.1, beta=1.0):
    """Symmetric CE: α·CE + β·RCE."""
    return _pair(num_classes, reduction, alpha, CrossEntropy(num_classes), beta, ReverseCrossEntropy(num_classes))


@declare(alpha=NON_NEGATIVE, beta=POSITIVE)
def nce_rce(num_classes, *, reduction="mean", alpha=1.0, beta=1.0):
    """APL: α·NCE + β·RCE."""
    k = num_classes
    return _pair(k, reduction, alpha, NormalizedCrossEntropy(k), beta, ReverseCrossEntropy(k))


@declare(alpha=NON_NEGATIVE, beta=POSITIVE, gamma=NON_NEGATIVE)
def nfl_rce(num_classes, *, reduction="mean", alpha=1.0, beta=1.0, gamma=0.5):
    """APL: α·NFL(γ) + β·RCE."""
    k = num_classes
    return _pair(k, reduction, alpha, NormalizedFocalLoss(k, gamma=gamma), beta, ReverseCrossEntropy(k), gamma=gamma)


@declare(alpha=NON_NEGATIVE, beta=POSITIVE)
def nce_mae(num_classes, *, reduction="mean", alpha=1.0, beta=1.0):
    """APL: α·NCE + β·(1 - p_y) (the MAE scale is replaced by β)."""
    k = num_classes
    return _pair(k, reduction, alpha, NormalizedCrossEntropy(k), beta, MeanAbsoluteError(k, scale=1.0))


@declare(alpha=NON_NEGATIVE, beta=POSITIVE, a=POSITIVE, q=POSITIVE)
def nce_agce(num_classes, *, reduction="mean", alpha=1.0, beta=4.0, a=6.0, q=1.5):
    """ALFs: α·NCE + β·AGCE(a, q)."""
    k = num_classes
    return _pair(k, reduction, alpha, NormalizedCrossEntropy(k), beta, AsymmetricGCE(k, a=a, q=q), a=a, q=q)


@declare(alpha=NON_NEGATIVE, beta=POSITIVE, a=ABOVE_ONE, q=POSITIVE)
def nce_aul(num_classes, *, reduction="mean", alpha=1.0, beta=4.0, a=6.3, q=1.5):
    """ALFs: α·NCE + β·AUL(a, q)."""
    k = num_classes
    return _pair(k, reduction, alpha, NormalizedCrossEntropy(k), beta, AsymmetricUnhingedLoss(k, a=a, q=q), a=a, q=q)


@declare(alpha=NON_NEGATIVE, beta=POSITIVE, a=POSITIVE)
def nce_ael(num_classes, *, reduction="mean", alpha=1.0, beta=4.0, a=5.0):
    """ALFs: α·NCE + β·AEL(a)."""
    k = num_classes
    return _pair(k, reduction, alpha, NormalizedCrossEntropy(k), beta, AsymmetricExponentialLoss(k, a=a), a=a)


@declare(alpha=NON_NEGATIVE, beta=POSITIVE, min_prob=PROBABILITY)
def anl_ce(num_classes, *, reduction="mean", alpha=5.0, beta=5.0, min_prob=1e-8):
    """ANL-CE: α·NCE + β·NNCE (its L1 penalty is part of the training recipe)."""
    k = num_classes
    negative = NormalizedNegativeCE(k, min_prob=min_prob)
    return _pair(k, reduction, alpha, NormalizedCrossEntropy(k), beta, negative, min_prob=min_prob)


@declare(alpha=NON_NEGATIVE, beta=POSITIVE, gamma=NON_NEGATIVE, min_prob=PROBABILITY)
def anl_fl(num_classes, *, reduction="mean", alpha=5.0, beta=5.0, gamma=0.5, min_prob=1e-8):
    """ANL-FL: α·NFL(γ) + β·NNFL(γ)."""
    k = num_classes
    active = NormalizedFocalLoss(k, gamma=gamma)
    negative = NormalizedNegativeFL(k, gamma=gamma, min_prob=min_prob)
    return _pair(k, reduction, alpha, active, beta, negative, gamma=gamma, min_prob=min_prob)


@declare(alpha=NON_NEGATIVE, beta=POSITIVE, a=AT_LEAST_ONE)
def jal_ce(num_classes, *, reduction="mean", alpha=1.0, beta=1.0, a=30.0):
    """JAL-CE: α·NCE + β·AMSE(a)."""
    k = num_classes
    return _pair(k, reduction, alpha, NormalizedCrossEntropy(k), beta, AsymmetricMSE(k, a=a), a=a)


@declare(alpha=NON_NEGATIVE, beta=POSITIVE, a=AT_LEAST_ONE, gamma=NON_NEGATIVE)
def jal_fl(num_classes, *, reduction="mean", alpha=1.0, beta=1.0, a=30.0, gamma=0.5):
    """JAL-FL: α·NFL(γ) + β·AMSE(a)."""
    k = num_classes
    active = NormalizedFocalLoss(k, gamma=gamma)
    return _pair(k, reduction, alpha, active, beta, AsymmetricMSE(k, a=a), a=a, gamma=gamma)


# canonical name -> (factory, aliases)
CATALOGUE = {
    "ce": (CrossEntropy, ("cross-entropy",)),
    "fl": (FocalLoss, ("focal",)),
    "gce": (GeneralizedCrossEntropy, ()),
    "sce": (sce, ()),
    "mae": (MeanAbsoluteError, ()),
    "rce": (ReverseCrossEntropy, ()),
    "mse": (MeanSquaredError, ()),
    "nce": (NormalizedCrossEntropy, ()),
    "nfl": (NormalizedFocalLoss, ()),
    "ngce": (NormalizedGCE, ()),
    "nce+rce": (nce_rce, ()),
    "nfl+rce": (nfl_rce, ()),
    "nce+mae": (nce_mae, ()),
    "agce": (AsymmetricGCE, ()),
    "aul": (AsymmetricUnhingedLoss, ()),
    "ael": (AsymmetricExponentialLoss, ()),
    "nce+agce": (nce_agce, ()),
    "nce+aul": (nce_aul, ()),
    "nce+ael": (nce_ael, ()),
    "nnce": (NormalizedNegativeCE, ()),
    "nnfl": (NormalizedNegativeFL, ()),
    "anl-ce": (anl_ce, ("nce+nnce",)),
    "anl-fl": (anl_fl, ("nfl+nnfl",)),
    "amse": (AsymmetricMSE, ()),
    "jal-ce": (jal_ce, ("nce+amse", "jal")),
    "jal-fl": (jal_fl, ("nfl+amse",)),
}


def register_all(register) -> None:
    for name, (factory, aliases) in CATALOGUE.items():
        register(name, factory, aliases=aliases)
