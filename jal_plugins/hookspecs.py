"""The hooks a jal-plugins plugin may implement.

Every hook receives a ``register`` callable and calls it once per thing it provides, so the host can
attribute each registration to the distribution that made it.
"""

import pluggy

PROJECT = "jal_plugins"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_losses(register):
    """Register losses: ``register(name, factory, *, aliases=())``.

    ``factory(num_classes, *, reduction="mean", **params)`` returns a ``torch.nn.Module`` whose
    ``forward(logits, target)`` gives the batch mean, the sum, or per-sample losses for ``reduction``
    "mean", "sum" or "none".
    """


@hookspec
def register_noise_models(register):
    """Register label-noise models: ``register(name, factory, *, aliases=())``.

    ``factory(**params)`` returns an object with ``apply(labels, num_classes=None, seed=None,
    features=None) -> np.ndarray`` and ``transition_matrix(num_classes) -> np.ndarray | None``.
    A model whose class sets ``needs_features = True`` is given the flattened training inputs.
    """


@hookspec
def register_models(register):
    """Register networks: ``register(name, factory, *, aliases=())``.

    ``factory(num_classes, in_channels, **params)`` returns a ``torch.nn.Module`` mapping a batch of
    inputs to logits; a factory that takes ``input_size`` gets the side of the (square) images, or 1
    for feature vectors, so it can be built for any dataset.
    """


@hookspec
def register_datasets(register):
    """Register datasets: ``register(name, factory, *, aliases=())``.

    ``factory(**params)`` returns a ``jal_plugins.datasets.ArrayDataset`` (train/test arrays,
    number of classes, normalisation).
    """


@hookspec
def register_methods(register):
    """Register training methods: ``register(name, factory, *, aliases=())``.

    ``factory(context, **params)`` gets a ``jal_plugins.methods.MethodContext`` (the run's loss,
    seeded networks and per-loss configs) and returns a learner with the ``Trainer`` interface
    (see ``jal_plugins.methods.base``).
    """
