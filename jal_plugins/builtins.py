"""The package's own plugin: registers every built-in loss, noise model, network, dataset and method.

It is declared under the ``jal_plugins`` entry-point group like any third-party plugin, and the host
also imports it directly so that a source checkout works without installed metadata.
"""

from jal_plugins.hookspecs import hookimpl


@hookimpl
def register_losses(register):
    from jal_plugins.losses.catalogue import register_all

    register_all(register)


@hookimpl
def register_noise_models(register):
    from jal_plugins.noise.catalogue import register_all

    register_all(register)


@hookimpl
def register_models(register):
    from jal_plugins.models import register_all

    register_all(register)


@hookimpl
def register_datasets(register):
    from jal_plugins.datasets import register_all

    register_all(register)


@hookimpl
def register_methods(register):
    from jal_plugins.methods.catalogue import register_all

    register_all(register)
