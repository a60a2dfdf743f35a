"""Hugging Face ``datasets`` adapter: CIFAR bases, CIFAR-N label sets aligned to them, a torch view.

``datasets`` is imported on first use, so ``import jal_plugins`` stays fast.
"""

from __future__ import annotations

import numpy as np
import torch

from jal_plugins.datasets.cifar import (
    CIFAR10_CLASSES,
    HUB_IDS,
    LABEL_SETS,
    base_name,
    read_cifar_n,
    read_local,
)
from jal_plugins.datasets.hub import load_cifar_base, to_arrays
from jal_plugins.labelfiles import align

__all__ = ["HFDatasetAdapter", "load_cifar_base", "load_cifar_n", "to_arrays"]


def _from_source(src, names) -> tuple:
    """A local non-Hub source (python batches, .npz) as a DatasetDict; encoded images stay encoded."""
    import datasets

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=names)})

    def split(x, y):
        images = [{"bytes": b, "path": None} for b in x] if isinstance(x, list) else list(x.transpose(0, 2, 3, 1))
        return datasets.Dataset.from_dict({"img": images, "label": np.asarray(y, np.int64)}, features=features)

    return datasets.DatasetDict({"train": split(src.x_train, src.y_train), "test": split(src.x_test, src.y_test)})


def load_cifar_n(
    dataset: str = "cifar10n",
    label_set: str = "worst",
    *,
    base: str | None = None,
    labels_file: str | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
):
    """CIFAR-10N/100N as a ``DatasetDict``: train has ``img``, ``label`` (``label_set``) and ``clean_label``.

    ``base`` is a Hub id (default ``uoft-cs/cifar10``/``uoft-cs/cifar100``), a local folder with the
    Hub's parquet files, a python-batches folder or a CIFAR ``.npz``. ``labels_file`` is the CIFAR-N
    ``.pt`` (read without unpickling arbitrary objects) or an ``.npz`` with the same keys. Rows keep
    the base's order; the labels are reordered to it after checking that ``clean_label`` equals the
    base label on every row (the Hub's CIFAR-10 is in batch order 4, 3, 2, 5, 1), and ``ValueError``
    is raised when no order makes them agree.
    """
    import datasets

    name = base_name(dataset)
    if not dataset.lower().endswith("n"):
        raise ValueError(f"load_cifar_n needs cifar10n or cifar100n, got dataset={dataset!r}")
    if label_set not in LABEL_SETS[name]:
        raise ValueError(f"unknown {name}n label_set {label_set!r} (known: {', '.join(LABEL_SETS[name])})")
    arrays = read_cifar_n(labels_file, name)
    base = base or HUB_IDS[name]
    src = read_local(base, name)
    if src is not None:
        names = src.class_names or (CIFAR10_CLASSES if name == "cifar10" else [str(i) for i in range(100)])
        loaded, index = _from_source(src, names), src.index
    else:
        loaded, index = load_cifar_base(base, revision=revision, cache_dir=cache_dir), None
    train = loaded["train"]
    clean = np.asarray(train["label"], np.int64)
    index = align(arrays["clean_label"], clean, index, what=f"label file {str(labels_file)!r}")
    label_feature = train.features["label"]
    train = train.remove_columns("label")
    train = train.add_column("label", arrays[LABEL_SETS[name][label_set]][index], feature=label_feature)
    train = train.add_column("clean_label", clean, feature=label_feature)
    return datasets.DatasetDict({"train": train, "test": loaded["test"]})


class HFDatasetAdapter(torch.utils.data.Dataset):
    """A torch ``Dataset`` over a Hugging Face dataset: ``(image tensor CHW uint8, label)`` per row.

    Wrapping matters for cleanlab: a raw HF dataset reads a boolean mask as integer indices
    (ecosystem.md §1.3), so pruning would hit the wrong rows; through this adapter cleanlab takes
    its torch ``Subset`` path. ``label_column=None`` uses ``label`` when present (else -1).
    """

    def __init__(self, hf_ds, input_column: str = "img", label_column: str | None = None, transform=None):
        if input_column not in hf_ds.column_names:
            raise ValueError(f"input_column {input_column!r} not in columns {hf_ds.column_names}")
        if label_column is not None and label_column not in hf_ds.column_names:
            raise ValueError(f"label_column {label_column!r} not in columns {hf_ds.column_names}")
        self.hf_ds = hf_ds
        self.input_column = input_column
        self.label_column = label_column or ("label" if "label" in hf_ds.column_names else None)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.hf_ds)

    def __getitem__(self, index):
        row = self.hf_ds[int(index)]
        x = np.asarray(row[self.input_column])
        if x.ndim == 3 and x.shape[-1] in (1, 3, 4):
            x = x.transpose(2, 0, 1)  # PIL/NumPy images are HWC
        elif x.ndim == 2:
            x = x[None]
        x = torch.from_numpy(np.ascontiguousarray(x))
        if self.transform is not None:
            x = self.transform(x)
        return x, int(row[self.label_column]) if self.label_column else -1
