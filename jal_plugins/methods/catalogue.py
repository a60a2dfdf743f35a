"""The built-in training methods."""

from jal_plugins.methods.coteaching import CoTeaching
from jal_plugins.methods.erm import erm
from jal_plugins.methods.prune import CleanlabPrune

CATALOGUE = {
    "erm": (erm, ("standard",)),
    "co-teaching": (CoTeaching, ("coteaching",)),
    "cleanlab-prune": (CleanlabPrune, ("cl-prune", "confident-learning")),
}


def register_all(register) -> None:
    for name, (factory, aliases) in CATALOGUE.items():
        register(name, factory, aliases=aliases)
