"""Read ``registry.toml``: per-dataset loss presets, training recipes and benchmark suites."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

from jal_plugins.plugins import UnknownNameError, normalize

_HERE = Path(__file__).resolve().parent
# Installed wheels carry the file inside the package; a source checkout keeps it at the root.
_CANDIDATES = (_HERE / "registry.toml", _HERE.parent / "registry.toml")


@functools.cache
def registry() -> dict:
    """The parsed ``registry.toml``."""
    for path in _CANDIDATES:
        if path.is_file():
            with path.open("rb") as fh:
                return tomllib.load(fh)
    raise FileNotFoundError(f"registry.toml not found in {', '.join(map(str, _CANDIDATES))}")


def section(section: str, name: str, what: str) -> dict:
    """Entry ``name`` of a top-level table of ``registry.toml`` (names compare case- and dash-insensitively)."""
    table = registry().get(section, {})
    for key, value in table.items():
        if normalize(key) == normalize(name):
            return value
    raise UnknownNameError(f"unknown {what} {name!r} (known: {', '.join(sorted(table))})")


def preset(name: str) -> dict:
    """One preset table (``losses`` and ``regularization``)."""
    return section("presets", name, "preset")


def list_presets() -> list[str]:
    return sorted(registry().get("presets", {}))


def _by_loss(table: dict, loss: str) -> dict | None:
    for key, value in table.items():
        if normalize(key) == normalize(loss):
            return dict(value)
    return None


def preset_params(name: str | None, loss: str) -> dict:
    """Loss parameters of preset ``name`` for ``loss`` (empty when the preset does not set them)."""
    if name is None:
        return {}
    return _by_loss(preset(name).get("losses", {}), loss) or {}


def preset_regularization(name: str | None, loss: str) -> dict:
    """``{"weight_decay": L2, "l1": L1}`` of preset ``name`` for ``loss`` (zeros without a preset)."""
    reg = {"weight_decay": 0.0, "l1": 0.0}
    if name is None:
        return reg
    table = preset(name).get("regularization", {})
    reg.update(_by_loss(table, loss) or table.get("default", {}))
    return reg


def recipe(dataset: str) -> dict:
    """The training recipe of ``dataset`` (falls back to the generic ``npz`` recipe)."""
    try:
        table = dict(section("recipes", dataset, "recipe"))
    except UnknownNameError:
        table = dict(section("recipes", "npz", "recipe"))
    table.pop("description", None)
    like = table.pop("like", None)
    return {**recipe(like), **table} if like else table
