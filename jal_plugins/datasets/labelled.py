"""The user's own labelled examples as an ``ArrayDataset``: class names from label values, a stratified split.

Shared by the ``imagefolder``, ``hf`` and ``table`` plugins, so every source names its classes, splits
and standardises the same way.
"""

from __future__ import annotations

import math

import numpy as np

from jal_plugins.checks import integer, probability
from jal_plugins.datasets.arrays import ArrayDataset, source_ids


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def class_codes(values, what: str) -> tuple[np.ndarray, list[str]]:
    """Label values (numbers or strings) as codes 0..K-1 and the K class names: the values, sorted.

    Numbers sort as numbers (2 before 10). A missing value (None, NaN, empty) or a single class is an
    error naming ``what`` (the column and its file).
    """
    values = list(values)
    missing = [row for row, v in enumerate(values) if _missing(v)]
    if missing:
        raise ValueError(f"{what} has {len(missing)} missing value(s), the first at row {missing[0]}")
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)
    keys = values if numeric else [str(v) for v in values]
    classes = sorted(set(keys))
    check_classes([str(c) for c in classes], what)
    code = {c: k for k, c in enumerate(classes)}
    return np.fromiter((code[v] for v in keys), np.int64, len(keys)), [str(c) for c in classes]


def check_classes(names: list[str], what: str) -> None:
    """Refuse a source with fewer than two classes."""
    if len(names) < 2:
        found = f"a single class {names[0]!r}" if names else "no classes"
        raise ValueError(f"{what} has {found}; a classifier needs at least 2 classes")


def split_rows(labels: np.ndarray, test_fraction: float, seed: int, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train rows, test rows): a stratified split, ``test_fraction`` of every class held out."""
    from sklearn.model_selection import train_test_split

    probability("test_fraction", test_fraction, open_low=True, open_high=True)
    integer("split_seed", seed, low=0)
    counts = np.bincount(labels, minlength=len(names))
    if counts.min() < 2:
        raise ValueError(
            f"class {names[int(counts.argmin())]!r} has {counts.min()} example(s); "
            "a stratified split (test_fraction) needs at least 2 per class"
        )
    train, test = train_test_split(np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(test)


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Float features standardised with the training rows' mean and std (a constant column is centred
    only), and that ``(mean, std)``."""
    train, test = train.astype(np.float64), test.astype(np.float64)
    mean = train.mean(0)
    std = train.std(0)
    std = np.where(std > 0, std, 1.0)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32), (mean, std)


def dataset(name: str, x_train, y_train, x_test, y_test, class_names: list[str], *, train_index=None, test_index=None,
            ids=None, corrections=None, featurize=standardize, texts=None) -> ArrayDataset:  # fmt: skip
    """An ``ArrayDataset`` of examples. ``corrections`` (a ``corrections.Corrections``) relabel and drop
    rows first, so the features are made from the rows kept: ``featurize(x_train, x_test)`` gives
    ``(train, test, scale)`` (default: float features standardised with the training statistics,
    ``scale`` their ``(mean, std)``, or None; images stay as they are).

    ``texts[position]``: the raw text of each example, when ``featurize`` makes features of texts.
    """
    summary = None
    if corrections is not None:  # the split stays that of the source's labels: the same test examples
        n = len(y_train)
        index = np.concatenate([train_index, test_index])
        labels, keep, summary = corrections.apply(source_ids(ids, index), np.concatenate([y_train, y_test]), class_names)
        x_train, y_train, train_index = x_train[keep[:n]], labels[:n][keep[:n]], train_index[keep[:n]]
        x_test, y_test, test_index = x_test[keep[n:]], labels[n:][keep[n:]], test_index[keep[n:]]
    scale = None
    if x_train.dtype != np.uint8:
        x_train, x_test, scale = featurize(x_train, x_test)
    return ArrayDataset(name, x_train, y_train, x_test, y_test, len(class_names), train_index=train_index,
                        test_index=test_index, class_names=list(class_names),
                        ids=None if ids is None else np.asarray(ids), texts=texts, corrections=summary, scale=scale)  # fmt: skip


def split_dataset(name: str, x: np.ndarray, labels: np.ndarray, class_names: list[str], test_fraction: float,
                  seed: int, *, positions=None, **options) -> ArrayDataset:  # fmt: skip
    """Examples of a source without a test split, split by ``split_rows``; ``positions``: each row's
    position in the source (default: its row number); ``options`` as ``dataset``'s."""
    positions = np.arange(len(labels)) if positions is None else np.asarray(positions)
    train, test = split_rows(labels, test_fraction, seed, class_names)
    return dataset(name, x[train], labels[train], x[test], labels[test], class_names, train_index=positions[train],
                   test_index=positions[test], **options)  # fmt: skip
