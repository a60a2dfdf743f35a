"""``registry.toml``, the declarative catalogue: loss and method presets, training recipes, benchmark suites."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from jal_plugins.plugins import UnknownNameError, normalize
from jal_plugins.specs import parse_spec

_HERE = Path(__file__).resolve().parent
# The wheel carries the file inside the package; a source checkout keeps it at the repository root.
_CANDIDATES = (_HERE / "registry.toml", _HERE.parent / "registry.toml")


@functools.cache
def load() -> dict:
    """The parsed ``registry.toml``."""
    for path in _CANDIDATES:
        if path.is_file():
            with path.open("rb") as fh:
                return tomllib.load(fh)
    raise FileNotFoundError(f"registry.toml not found in {', '.join(map(str, _CANDIDATES))}")


def _lookup(table: dict, name: str) -> dict | None:
    for key, value in table.items():
        if normalize(key) == normalize(name):
            return value
    return None


def section(section: str, name: str, what: str) -> dict:
    """Entry ``name`` of a top-level table (names compare case- and dash-insensitively)."""
    table = load().get(section, {})
    found = _lookup(table, name)
    if found is None:
        raise UnknownNameError(f"unknown {what} {name!r} (known: {', '.join(sorted(table))})")
    return found


def list_presets() -> list[str]:
    return sorted(load().get("presets", {}))


def preset_params(name: str | None, loss: str) -> dict:
    """Loss parameters of preset ``name`` for ``loss`` (empty when the preset does not set them)."""
    if name is None:
        return {}
    return dict(_lookup(section("presets", name, "preset").get("losses", {}), loss) or {})


def preset_regularization(name: str | None, loss: str) -> dict:
    """``{"weight_decay": L2, "l1": L1}`` of preset ``name`` for ``loss`` (zeros without a preset)."""
    reg = {"weight_decay": 0.0, "l1": 0.0}
    if name is None:
        return reg
    table = section("presets", name, "preset").get("regularization", {})
    reg.update(_lookup(table, loss) or table.get("default", {}))
    return reg


def method_params(method: str, preset: str | None, noise: str) -> dict:
    """Parameters of ``method`` under ``preset`` for the canonical ``noise`` (empty without an entry).

    ``[methods.METHOD.PRESET]`` holds the values for every noise; its ``noise`` table overrides them per
    noise level: the entry of the same noise model at the nearest rate, or the entry named like a
    dataset's label set (``worst``).
    """
    if preset is None:
        return {}
    table = dict(_lookup(_lookup(load().get("methods", {}), method) or {}, preset) or {})
    by_noise = table.pop("noise", {})
    return {**table, **_nearest_noise(by_noise, noise)}


def _nearest_noise(by_noise: dict, noise: str) -> dict:
    name, params = parse_spec(noise)
    rate = params.get("rate")
    best, distance = {}, None
    for spec, values in by_noise.items():
        other, other_params = parse_spec(spec)
        if normalize(other) != normalize(name):
            continue
        other_rate = other_params.get("rate")
        if (rate is None) != (other_rate is None):
            continue
        gap = 0.0 if rate is None else abs(rate - other_rate)
        if distance is None or gap < distance:
            best, distance = values, gap
    return dict(best)


def recipe(dataset: str) -> dict:
    """The training recipe of ``dataset`` (the generic ``npz`` recipe for datasets without one).

    Holds ``model``, ``model_params``, ``preset`` and training-engine fields.
    """
    table = dict(_lookup(load().get("recipes", {}), dataset) or section("recipes", "npz", "recipe"))
    table.pop("description", None)
    like = table.pop("like", None)
    return {**recipe(like), **table} if like else table
