"""Dataset plugins: each factory returns an ``ArrayDataset`` (train/test arrays, classes, normalisation)."""

from jal_plugins.datasets.arrays import ArrayDataset, as_nchw, balanced_subset, channel_stats, digits, npz
from jal_plugins.datasets.cifar import cifar10, cifar10n, cifar100, cifar100n
from jal_plugins.datasets.folder import imagefolder
from jal_plugins.datasets.hf import hf
from jal_plugins.datasets.idx import fashion_mnist, mnist
from jal_plugins.datasets.table import table

CATALOGUE = {
    "digits": (digits, ()),
    "npz": (npz, ()),
    "cifar10": (cifar10, ("cifar-10",)),
    "cifar100": (cifar100, ("cifar-100",)),
    "cifar10n": (cifar10n, ("cifar-10n",)),
    "cifar100n": (cifar100n, ("cifar-100n",)),
    "mnist": (mnist, ()),
    "fashion-mnist": (fashion_mnist, ("fmnist",)),
    "imagefolder": (imagefolder, ("image-folder",)),
    "hf": (hf, ("huggingface",)),
    "table": (table, ("csv", "parquet")),
}


def register_all(register) -> None:
    for name, (factory, aliases) in CATALOGUE.items():
        register(name, factory, aliases=aliases)


__all__ = ["ArrayDataset", "as_nchw", "balanced_subset", "channel_stats", "register_all"]
