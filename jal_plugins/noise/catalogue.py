"""The built-in noise models."""

from jal_plugins.noise.instance import InstanceDependent, LabelFile
from jal_plugins.noise.synthetic import Asymmetric, PairFlip, Symmetric, Transition

CATALOGUE = {
    "symmetric": (Symmetric, ("sym", "uniform")),
    "asymmetric": (Asymmetric, ("asym",)),
    "pairflip": (PairFlip, ("pair",)),
    "transition": (Transition, ()),
    "instance": (InstanceDependent, ("idn",)),
    "label-file": (LabelFile, ()),
}


def register_all(register) -> None:
    for name, (factory, aliases) in CATALOGUE.items():
        register(name, factory, aliases=aliases)
