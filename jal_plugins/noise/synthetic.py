"""Class-conditional noise: symmetric, asymmetric (class mappings), pair flip and any given T."""

from __future__ import annotations

import numpy as np

from jal_plugins.checks import boolean
from jal_plugins.noise.base import NoiseModel, check_rate, check_transition_matrix

# losses-and-noise.md §3.1: the source -> target flips of the reference asymmetric generators.
MAPPINGS = {
    "cifar10": {9: 1, 2: 0, 3: 5, 5: 3, 4: 7},  # truck->automobile, bird->airplane, cat<->dog, deer->horse
    "mnist": {7: 1, 2: 7, 5: 6, 6: 5, 3: 8},
}


def cifar100_mapping(num_classes: int) -> dict[int, int]:
    """Next class inside each block of 5 consecutive indices (as every reference repo does)."""
    if num_classes % 5:
        raise ValueError(f"the cifar100 mapping needs a multiple of 5 classes, got {num_classes}")
    return {c: c - c % 5 + (c % 5 + 1) % 5 for c in range(num_classes)}


class Symmetric(NoiseModel):
    """Flip a fraction ``rate`` of each class uniformly to the other classes.

    ``exact=True`` (default) reproduces the JAL generator: exactly ``trunc(rate/(K-1)·n_i)`` samples of
    each class go to each other class. ``exact=False`` draws each label independently.
    ``include_true_class=True`` spreads ``rate`` over all K classes (the DivideMix convention).
    """

    def __init__(self, rate: float = 0.4, exact: bool = True, include_true_class: bool = False):
        self.rate = check_rate(rate)
        self.exact = boolean("exact", exact)
        self.include_true_class = boolean("include_true_class", include_true_class)

    def transition_matrix(self, num_classes):
        k = num_classes
        if self.include_true_class:
            return (1 - self.rate) * np.eye(k) + self.rate / k * np.ones((k, k))
        return (1 - self.rate) * np.eye(k) + self.rate / (k - 1) * (np.ones((k, k)) - np.eye(k))


class Asymmetric(NoiseModel):
    """Flip a fraction ``rate`` of each source class to its target.

    ``mapping`` is "cifar10", "cifar100", "mnist" or an explicit ``{source: target}`` dict.
    """

    def __init__(self, rate: float = 0.4, mapping="cifar10", exact: bool = True):
        self.rate = check_rate(rate)
        if isinstance(mapping, str) and mapping.lower() not in (*MAPPINGS, "cifar100"):
            raise ValueError(f"unknown mapping {mapping!r} (known: {', '.join([*MAPPINGS, 'cifar100'])} or a dict)")
        if not isinstance(mapping, (str, dict)):
            raise ValueError(f"mapping must be a name or a {{source: target}} dict, got {mapping!r}")
        self.mapping = mapping.lower() if isinstance(mapping, str) else {int(s): int(t) for s, t in mapping.items()}
        self.exact = boolean("exact", exact)

    def pairs(self, num_classes: int) -> dict[int, int]:
        if self.mapping == "cifar100":
            return cifar100_mapping(num_classes)
        pairs = MAPPINGS[self.mapping] if isinstance(self.mapping, str) else self.mapping
        for s, t in pairs.items():
            if not (0 <= s < num_classes and 0 <= t < num_classes) or s == t:
                raise ValueError(f"mapping {s}->{t} is not a flip between two of {num_classes} classes")
        return pairs

    def transition_matrix(self, num_classes):
        t = np.eye(num_classes)
        for s, d in self.pairs(num_classes).items():
            t[s, s], t[s, d] = 1 - self.rate, self.rate
        return t


class PairFlip(NoiseModel):
    """``y -> (y + 1) mod K`` with probability ``rate``."""

    def __init__(self, rate: float = 0.4, exact: bool = True):
        self.rate = check_rate(rate)
        self.exact = boolean("exact", exact)

    def transition_matrix(self, num_classes):
        k = num_classes
        return (1 - self.rate) * np.eye(k) + self.rate * np.roll(np.eye(k), 1, axis=1)


class Transition(NoiseModel):
    """Any row-stochastic ``matrix`` with ``T[i, j] = P(noisy = j | true = i)``."""

    def __init__(self, matrix, exact: bool = True):
        self.matrix = check_transition_matrix(matrix)
        self.exact = boolean("exact", exact)

    def transition_matrix(self, num_classes):
        return check_transition_matrix(self.matrix, num_classes)
