"""Datasets as arrays (uint8 NCHW images or float rows), and the small ones that need no download."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jal_plugins.checks import class_labels, finite_array, integer


@dataclass
class ArrayDataset:
    """A classification dataset held in memory; ``y_train`` are the clean labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: list[float] | None = None  # per-channel normalisation of uint8 images, in [0, 1] units
    std: list[float] | None = None
    noisy_labels: dict[str, np.ndarray] = field(default_factory=dict)  # real label sets (CIFAR-N)
    train_index: np.ndarray | None = None  # each train row's position in the source's original order
    test_index: np.ndarray | None = None  # each test row's position (default: after the train rows)
    class_names: list[str] | None = None  # folder names, ClassLabel names or the label values, sorted
    ids: np.ndarray | None = None  # ids[position]: what the source calls that example (a relative path)
    texts: np.ndarray | None = None  # texts[position]: the raw text behind a text column's features
    corrections: dict | None = None  # what a corrections file changed: {"file", "relabelled", "dropped"}
    scale: tuple | None = None  # (mean, std) a table's features were standardised with (source_values)

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise ValueError(f"{self.name}: {len(x)} {split} inputs but {len(y)} labels")
            index = getattr(self, f"{split}_index")
            if index is not None and len(index) != len(y):
                raise ValueError(f"{self.name}: {len(y)} {split} rows but {len(index)} positions in {split}_index")
            finite_array(f"{self.name} x_{split}", x)
            y, _ = class_labels(f"{self.name} y_{split}", y, self.num_classes)
            setattr(self, f"y_{split}", y)
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if self.x_train.dtype == np.uint8 and self.mean is None:
            self.mean, self.std = channel_stats(self.x_train)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape: (C, H, W) or (F,)."""
        return tuple(self.x_train.shape[1:])

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def is_image(self) -> bool:
        return self.x_train.ndim == 4

    @property
    def names(self) -> list[str]:
        """The class names (``"0"``, ``"1"``, ... when the source has none)."""
        return list(self.class_names) if self.class_names is not None else [str(k) for k in range(self.num_classes)]

    def labelled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every labelled example, train rows then test rows: ``(inputs, labels, source positions)``."""
        train = np.arange(len(self.y_train)) if self.train_index is None else np.asarray(self.train_index)
        start = int(train.max()) + 1 if train.size else 0
        test = start + np.arange(len(self.y_test)) if self.test_index is None else np.asarray(self.test_index)
        x = np.concatenate([self.x_train, self.x_test])
        return x, np.concatenate([self.y_train, self.y_test]), np.concatenate([train, test]).astype(np.int64)

    def example_ids(self, positions) -> list[str]:
        """What the source calls the examples at ``positions``: ``ids`` entries, else the position itself."""
        return source_ids(self.ids, positions)

    def example_texts(self, positions) -> list[str]:
        """The raw texts of the examples at ``positions`` (a dataset made from a ``text_column``)."""
        if self.texts is None:
            raise ValueError(f"{self.name} has no texts: its features do not come from a text_column")
        return [str(self.texts[p]) for p in positions]

    def source_values(self, x: np.ndarray) -> np.ndarray:
        """Rows of this dataset's features as the source gave them (a table's, before standardising)."""
        if self.scale is None:
            return x
        mean, std = self.scale
        return x * std + mean

    def features(self) -> np.ndarray:
        """Flattened, normalised training inputs (for instance-dependent noise)."""
        x = self.x_train.astype(np.float32)
        if self.x_train.dtype == np.uint8:
            mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
            std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
            x = (x / 255 - mean) / std
        return x.reshape(len(x), -1)


def source_ids(ids, positions) -> list[str]:
    """The ids of the examples at ``positions``: ``ids`` entries, else the position itself."""
    return [str(p) if ids is None else str(ids[p]) for p in positions]


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 NCHW images, in [0, 1] units."""
    x = images.astype(np.float64) / 255
    return x.mean((0, 2, 3)).tolist(), np.maximum(x.std((0, 2, 3)), 1e-8).tolist()


def as_nchw(x: np.ndarray) -> np.ndarray:
    """Images as NCHW: (N, H, W) gains a channel axis; NHWC (last axis 1, 3 or 4) is transposed."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def digits(test_size: int = 500, split_seed: int = 0) -> ArrayDataset:
    """scikit-learn's bundled digits (1,797 8x8 images), a fixed stratified split into train/test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    images = np.round(raw.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = raw.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=split_seed)
    return ArrayDataset("digits", images[tr], labels[tr], images[te], labels[te], 10, train_index=tr, test_index=te,
                        class_names=[str(d) for d in range(10)])  # fmt: skip


def npz(path: str, num_classes: int | None = None) -> ArrayDataset:
    """An .npz with ``x_train, y_train, x_test, y_test``: uint8 images (NCHW/NHWC/NHW) or float rows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
        if missing:
            raise ValueError(f"{path} lacks {missing} (has {f.files})")
        arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    x_train, x_test = (arrays[k] if arrays[k].ndim == 2 else as_nchw(arrays[k]) for k in ("x_train", "x_test"))
    if x_train.dtype != np.uint8:
        x_train = finite_array(f"{path} x_train", x_train.astype(np.float32))
        x_test = finite_array(f"{path} x_test", x_test.astype(np.float32))
    # K comes from the training labels: a test label the training set never has cannot be learnt.
    y_train, k = class_labels(f"{path} y_train", arrays["y_train"], num_classes)
    y_test, _ = class_labels(f"{path} y_test", arrays["y_test"], k)
    return ArrayDataset(path.stem, x_train, y_train, x_test, y_test, k)


def balanced_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``size`` rows with (as near as possible) equal counts per class."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    integer("subset size", size, low=classes.size, high=labels.size)
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    quota = np.full(classes.size, size // classes.size)
    quota[: size % classes.size] += 1
    return np.sort(np.concatenate([rows[:q] for rows, q in zip(per_class, quota)]))
