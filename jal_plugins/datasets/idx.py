"""MNIST-family datasets from IDX files (plain or gzipped), e.g. Debian's ``dataset-fashion-mnist``."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from jal_plugins.datasets.arrays import ArrayDataset, balanced_subset

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # apt-get install dataset-fashion-mnist
FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
MNIST_NORMALIZE = ([0.1307], [0.3081])
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]  # fmt: skip


def read_idx(path: Path) -> np.ndarray:
    """One IDX array (unsigned bytes: images N×H×W or labels N)."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {data.size} values")
    return data.reshape(shape).copy()  # frombuffer views are read-only; torch wants writable arrays


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{folder} has no {stem}[.gz]")


def load(name: str, path, train_size: int | None, seed: int, normalize=None, class_names=None) -> ArrayDataset:
    """The four IDX files in ``path`` (``train_size``: a class-balanced subset of the train split)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{name}: folder {str(folder)!r} does not exist")
    arrays = {key: read_idx(_find(folder, stem)) for key, stem in FILES.items()}
    x_train, y_train = arrays["x_train"][:, None], arrays["y_train"].astype(np.int64)
    keep = None
    if train_size is not None:
        keep = balanced_subset(y_train, train_size, seed)
        x_train, y_train = x_train[keep], y_train[keep]
    mean, std = normalize or (None, None)
    test_index = len(arrays["y_train"]) + np.arange(len(arrays["y_test"]))  # the test files follow the train files
    return ArrayDataset(name, x_train, y_train, arrays["x_test"][:, None], arrays["y_test"].astype(np.int64), 10,
                        mean, std, train_index=keep, test_index=test_index,
                        class_names=class_names or [str(d) for d in range(10)])  # fmt: skip


def mnist(path: str | None = None, train_size: int | None = None, subset_seed: int = 0) -> ArrayDataset:
    """MNIST from the IDX files in ``path`` (no download: nothing ships it for offline use)."""
    if path is None:
        raise ValueError("mnist needs path=DIR holding the four MNIST IDX files (train-images-idx3-ubyte[.gz], ...)")
    return load("mnist", path, train_size, subset_seed, MNIST_NORMALIZE)


def fashion_mnist(path: str = FASHION_MNIST_DIR, train_size: int | None = None, subset_seed: int = 0):
    """Fashion-MNIST (default: the Debian package's folder); normalised with its own train statistics."""
    return load("fashion-mnist", path, train_size, subset_seed, class_names=FASHION_MNIST_CLASSES)
