"""The built-in training methods."""

from jal_plugins.methods.coteaching import CoTeaching
from jal_plugins.methods.dividemix import DivideMix
from jal_plugins.methods.elr import ELR
from jal_plugins.methods.erm import erm
from jal_plugins.methods.prune import CleanlabPrune

CATALOGUE = {
    "erm": (erm, ("standard",)),
    "co-teaching": (CoTeaching, ("coteaching",)),
    "cleanlab-prune": (CleanlabPrune, ("cl-prune", "confident-learning")),
    "dividemix": (DivideMix, ("divide-mix",)),
    "elr": (ELR, ("early-learning-regularization",)),
}


def register_all(register) -> None:
    for name, (factory, aliases) in CATALOGUE.items():
        register(name, factory, aliases=aliases)
