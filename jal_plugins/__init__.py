"""jal-plugins: robust losses and label-noise models for training on noisy labels.

Importing the package is cheap: torch, NumPy and the adapters load on first use.
"""

from __future__ import annotations

from jal_plugins.hookspecs import hookimpl

__version__ = "0.2.0"


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
    from jal_plugins import checks, domains
    from jal_plugins.losses.base import REDUCTIONS
    from jal_plugins.plugins import check_params
    from jal_plugins.registry import preset_params

    entry = _catalogue("losses").get(name)
    checks.integer("num_classes", num_classes, low=2)
    checks.choice("reduction", reduction, REDUCTIONS)
    merged = {**preset_params(preset, entry.name), **params}
    check_params(entry, merged, skip=1)
    domains.check(entry.name, entry.factory, merged)
    return entry.factory(num_classes, reduction=reduction, **merged)


def create_noise_model(name: str, **params):
    """Build the label-noise model ``name`` (see ``list_noise_models()``)."""
    from jal_plugins.plugins import check_params

    entry = _catalogue("noise_models").get(name)
    check_params(entry, params, skip=0)
    return entry.factory(**params)


def create_model(name: str, num_classes: int, in_channels: int = 3, input_size: int | None = None, **params):
    """Build the network ``name`` (see ``list_models()``).

    ``input_size`` (the side of square images, 1 for feature vectors) reaches factories that take it,
    so every registered network is built for the data at hand.
    """
    from jal_plugins.models import takes_input_size
    from jal_plugins.plugins import check_params

    entry = _catalogue("models").get(name)
    check_params(entry, params, skip=2)
    if input_size is not None and "input_size" not in params and takes_input_size(entry.factory):
        params["input_size"] = input_size
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
