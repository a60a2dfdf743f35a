"""Where a loss parameter may lie: intervals declared by each loss, checked before a loss is built.

A factory (a loss class or function) declares ``domains = {"q": UNIT, ...}``, as a class attribute
or through ``@declare``; ``check`` refuses a value outside its interval with the interval in the
message (``gce,q=2`` would train silently otherwise), and a search may only mark a declared
parameter ``auto``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """Real numbers between ``low`` and ``high``, each end open or closed."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Interval(0, low_open=True)
NON_NEGATIVE = Interval(0)
UNIT = Interval(0, 1, low_open=True)  # (0, 1]
PROBABILITY = Interval(0, 1, low_open=True, high_open=True)
AT_LEAST_ONE = Interval(1)
ABOVE_ONE = Interval(1, low_open=True)


def declare(**domains: Interval):
    """Decorator: the factory's parameters lie in ``domains``."""

    def mark(factory):
        factory.domains = domains
        return factory

    return mark


def domains_of(factory) -> dict[str, Interval]:
    """The declared domains of a factory's parameters (empty when it declares none)."""
    return dict(getattr(factory, "domains", {}) or {})


def check(owner: str, factory, params: dict) -> None:
    """Refuse a value outside its declared domain, naming ``owner``, the parameter and the domain."""
    for name, domain in domains_of(factory).items():
        if name in params and params[name] not in domain:
            raise ValueError(f"{owner}: {name}={params[name]!r} is outside its domain {name} {domain}")
