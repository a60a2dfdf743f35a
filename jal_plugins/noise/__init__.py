"""Label-noise models (plugins registered through ``register_noise_models``) and noise utilities."""

from jal_plugins.noise.base import NoiseModel
from jal_plugins.noise.utils import from_cleanlab, noise_rates, realized_transition_matrix, to_cleanlab

__all__ = ["NoiseModel", "from_cleanlab", "noise_rates", "realized_transition_matrix", "to_cleanlab"]
