"""jal-plugins: robust losses and label-noise models for training on noisy labels.

Importing the package is cheap: torch, NumPy and the adapters load on first use.
"""

from __future__ import annotations

import os as _os

from jal_plugins.hookspecs import hookimpl

__version__ = "0.1.0"

# In a source checkout adapters/ sits beside the package; the wheel ships it as jal_plugins/adapters.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(__path__[0], "adapters")) and _os.path.isfile(
    _os.path.join(_root, "adapters", "__init__.py")
):
    __path__.append(_root)

REDUCTIONS = ("mean", "sum", "none")


def _catalogue(kind: str):
    from jal_plugins.plugins import host

    return host()[kind]


def list_losses() -> dict[str, str]:
    """Registered losses: ``{canonical name: providing distribution}``."""
    return _catalogue("losses").providers()


def list_noise_models() -> dict[str, str]:
    """Registered label-noise models: ``{canonical name: providing distribution}``."""
    return _catalogue("noise_models").providers()


def list_models() -> dict[str, str]:
    """Registered networks: ``{canonical name: providing distribution}``."""
    return _catalogue("models").providers()


def list_datasets() -> dict[str, str]:
    """Registered datasets: ``{canonical name: providing distribution}``."""
    return _catalogue("datasets").providers()


def list_methods() -> dict[str, str]:
    """Registered training methods: ``{canonical name: providing distribution}``."""
    return _catalogue("methods").providers()


def create_loss(name: str, num_classes: int, *, preset: str | None = None, reduction: str = "mean", **params):
    """Build the loss ``name`` for ``num_classes`` classes.

    ``preset`` (e.g. ``"cifar100"``) fills in the paper's hyperparameters from ``registry.toml``;
    explicit ``params`` override it. ``reduction`` is "mean", "sum" or "none" (per-sample).
    """
    from jal_plugins.plugins import check_params
    from jal_plugins.presets import preset_params

    entry = _catalogue("losses").get(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    merged = {**preset_params(preset, entry.name), **params}
    check_params(entry, merged, skip=1)
    return entry.factory(num_classes, reduction=reduction, **merged)


def create_noise_model(name: str, **params):
    """Build the label-noise model ``name`` (see ``list_noise_models()``)."""
    from jal_plugins.plugins import check_params

    entry = _catalogue("noise_models").get(name)
    check_params(entry, params, skip=0)
    return entry.factory(**params)


def create_model(name: str, num_classes: int, in_channels: int = 3, **params):
    """Build the network ``name`` (see ``list_models()``)."""
    from jal_plugins.plugins import check_params

    entry = _catalogue("models").get(name)
    check_params(entry, params, skip=2)
    return entry.factory(num_classes, in_channels, **params)


def create_method(name: str, context, **params):
    """Build the learner of training method ``name`` for a ``jal_plugins.methods.MethodContext``."""
    from jal_plugins.plugins import check_params

    entry = _catalogue("methods").get(name)
    check_params(entry, params, skip=1)
    return entry.factory(context, **params)


def __getattr__(name: str):
    if name == "JALClassifier":
        from jal_plugins.adapters.sklearn import JALClassifier

        return JALClassifier
    raise AttributeError(f"module 'jal_plugins' has no attribute {name!r}")


__all__ = [
    "JALClassifier",
    "__version__",
    "create_loss",
    "create_method",
    "create_model",
    "create_noise_model",
    "hookimpl",
    "list_datasets",
    "list_losses",
    "list_methods",
    "list_models",
    "list_noise_models",
]
