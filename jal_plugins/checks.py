"""Validators shared by every module: each returns the checked value or raises a ValueError naming it.

A message always shows ``name=value`` so the user sees which setting was wrong and what they gave.
"""

from __future__ import annotations

import math

import numpy as np


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def _plain(value):
    """A NumPy scalar as the Python value, so messages show ``3.7``, not ``np.float64(3.7)``."""
    return value.item() if isinstance(value, np.generic) else value


def number(name: str, value, *, low: float = -math.inf, high: float = math.inf, strict_low: bool = False,
           strict_high: bool = False) -> float:  # fmt: skip
    """``value`` as a finite float inside the given range."""
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {name}={_plain(value)!r}")
    too_low = value <= low if strict_low else value < low
    too_high = value >= high if strict_high else value > high
    if too_low or too_high:
        parts = []
        if low > -math.inf:
            parts.append(f"{'>' if strict_low else '>='} {low:g}")
        if high < math.inf:
            parts.append(f"{'<' if strict_high else '<='} {high:g}")
        raise ValueError(f"{name} must be {' and '.join(parts)}, got {name}={_plain(value)!r}")
    return float(value)


def positive(name: str, value) -> float:
    return number(name, value, low=0, strict_low=True)


def non_negative(name: str, value) -> float:
    return number(name, value, low=0)


def probability(name: str, value, *, open_high: bool = False, open_low: bool = False) -> float:
    """A number in [0, 1] (either end open on request)."""
    return number(name, value, low=0, high=1, strict_low=open_low, strict_high=open_high)


def integer(name: str, value, *, low: int | None = None, high: int | None = None) -> int:
    """An integer (not a bool, not a float) inside the given range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {name}={_plain(value)!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bound = " and ".join(p for p in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if p)
        raise ValueError(f"{name} must be an integer {bound}, got {name}={_plain(value)!r}")
    return int(value)


def positive_int(name: str, value) -> int:
    return integer(name, value, low=1)


def boolean(name: str, value) -> bool:
    """A real bool: ``"yes"``, ``1`` or ``"nope"`` are refused instead of read as truthy."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{name} must be true or false, got {name}={_plain(value)!r}")


def choice(name: str, value, options) -> str:
    """One of ``options``."""
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(str, options))}; got {name}={value!r}")
    return value


def finite_array(name: str, array) -> np.ndarray:
    """A float array without NaN or infinity; the error counts them and names the first row."""
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return array
    bad = ~np.isfinite(array.reshape(len(array), -1) if array.ndim > 1 else array)
    if bad.ndim > 1:
        bad = bad.any(1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"{name} has NaN or infinite values in {rows.size} row(s), the first at row {rows[0]}")
    return array


def class_labels(name: str, labels, num_classes: int | None = None) -> tuple[np.ndarray, int]:
    """Labels as a 1-D int64 array in 0..K-1 (integral floats accepted) and K (max + 1 unless given)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iub":
        if arr.dtype.kind != "f":
            raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if bad.size:
            raise ValueError(f"{name} must hold integers, found {_plain(arr[bad[0]])!r} at position {bad[0]}")
    arr = arr.astype(np.int64)
    k = num_classes if num_classes is not None else (int(arr.max()) + 1 if arr.size else None)
    if k is None or k < 2:
        raise ValueError(f"{name}: need at least 2 classes, got num_classes={k!r}")
    bad = np.flatnonzero((arr < 0) | (arr >= k))
    if bad.size:
        raise ValueError(f"{name} must lie in 0..{k - 1}, found {int(arr[bad[0]])} at position {bad[0]}")
    return arr, int(k)


DEVICE_TYPES = ("cpu", "cuda", "mps")


def device(value="auto", available: bool = True):
    """``auto`` -> CUDA when available, else CPU; ``cpu``, ``cuda``, ``cuda:N``, ``mps`` as given.

    An unavailable or unknown device is an error, never a silent fallback; ``available=False``
    checks the spelling only (a planner whose runs train on other machines).
    """
    import torch

    if value in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(value, torch.device):
        dev = value
    else:
        try:
            dev = torch.device(str(value))
        except RuntimeError:
            dev = None
        if dev is None or dev.type not in DEVICE_TYPES:
            raise ValueError(f"device must be auto, {', '.join(DEVICE_TYPES)} or cuda:N; got device={value!r}")
    if not available:
        return dev
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(value)!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={str(value)!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={str(value)!r} requested but MPS is not available")
    return dev


class MissingExtra(ModuleNotFoundError):
    """An optional dependency is not installed; the message says what to install."""
