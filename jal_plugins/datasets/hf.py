"""``hf``: any Hugging Face dataset of images or numeric columns: a Hub id, a local copy, or data files.

Examples are numbered by their position in the training split followed by the test split (when one
is used), and named ``SPLIT/ROW``. Images are decoded once and cached like an image folder's, keyed
by the splits' fingerprints.
"""

from __future__ import annotations

import numpy as np

from jal_plugins.datasets.arrays import ArrayDataset


def _pick_split(splits: dict, split: str | None, test_split: str | None, test_fraction, where: str):
    """(training split, test split or None, test fraction or None), each named split checked to exist."""
    if test_split is not None and test_fraction is not None:
        raise ValueError(f"give test_split or test_fraction, not both (test_split={test_split!r}, "
                         f"test_fraction={test_fraction!r})")  # fmt: skip
    if split is None:
        split = "train" if "train" in splits or len(splits) != 1 else next(iter(splits))
    if test_split is None and test_fraction is None:
        test_split = "test" if "test" in splits and split != "test" else None
    for option, name in (("split", split), ("test_split", test_split)):
        if name is not None and name not in splits:
            raise ValueError(f"{where} has no split {option}={name!r} (splits: {', '.join(splits)})")
    if test_split == split:
        raise ValueError(f"test_split={test_split!r} is the training split; name another split or use test_fraction")
    return split, test_split, (0.2 if test_split is None and test_fraction is None else test_fraction)


def _default_label(ds, where: str) -> str:
    import datasets

    found = [c for c, f in ds.features.items() if isinstance(f, datasets.ClassLabel)]
    if len(found) == 1:
        return found[0]
    if "label" in ds.column_names:
        return "label"
    columns = ", ".join(ds.column_names)
    raise ValueError(f"{where}: which column holds the labels? pass label_column=NAME (columns: {columns})")


def _image_column(ds, given: str | None, where: str) -> str | None:
    """The image column: ``given``, else the only ``Image`` feature; None for a table of numbers."""
    import datasets

    from jal_plugins.datasets.table import require_column

    if given is not None:
        require_column(ds, given, "image_column", where)
        return given
    found = [c for c, f in ds.features.items() if isinstance(f, datasets.Image)]
    if len(found) > 1:
        raise ValueError(f"{where} has several image columns ({', '.join(found)}); pass image_column=NAME")
    return found[0] if found else None


def _images(parts, names: list[str], column: str, ids: list[str], size, where: str, cache_dir):
    """(uint8 NCHW images, kept rows) of the ``column`` of every dataset in ``parts``, through the cache."""
    import datasets

    from jal_plugins.datasets.images import load_images

    def sources():
        cells = []
        for ds in parts:
            raw = ds.select_columns([column]).cast_column(column, datasets.Image(decode=False))
            cells += raw.with_format("arrow")[:][column].to_pylist()
        return [cell["bytes"] or cell["path"] for cell in cells]

    key = {"fingerprints": [ds._fingerprint for ds in parts], "splits": names, "column": column, "size": size}
    return load_images("hf", key, sources, ids, size, where, cache_dir)


def hf(path: str, name: str | None = None, revision: str | None = None, split: str | None = None, data_files=None,
       image_column: str | None = None, label_column: str | None = None, feature_columns=None,
       text_column: str | None = None, max_features: int | None = None, test_split: str | None = None,
       test_fraction: float | None = None, split_seed: int = 0, size: int | None = None, cache_dir: str | None = None,
       corrections: str | None = None) -> ArrayDataset:  # fmt: skip
    """A dataset through ``datasets.load_dataset``: a Hub id (pin ``revision``; ``name`` is the config), a
    local dataset folder (also one written by ``save_to_disk``), or ``data_files`` / a single parquet,
    arrow, CSV or JSON file.

    ``split`` trains (default ``train``, or the only split); ``test_split`` is held out (default
    ``test`` when there is one), else a stratified ``test_fraction`` (default 0.2) of ``split``.
    ``label_column`` defaults to the only ``ClassLabel`` column, else ``label``; ``image_column`` to
    the only ``Image`` column. Without an image column the examples are the numeric
    ``feature_columns`` (default: every other column; a column of same-length vectors, such as
    embeddings, gives a feature per element), standardised with the training statistics; with
    ``text_column`` the TF-IDF of its texts, as ``table``'s. Images are resized to ``size`` like an
    image folder's. ``corrections``: a reviewed ``decisions.csv`` relabels and drops examples
    (``jal_plugins.datasets.corrections``). With ``HF_HUB_OFFLINE=1`` only local or cached copies
    load. ``cache_dir`` holds the ``datasets`` cache and the decoded images.
    """
    from jal_plugins.datasets.corrections import read
    from jal_plugins.datasets.hub import load_hub
    from jal_plugins.datasets.labelled import dataset, split_dataset
    from jal_plugins.datasets.table import inputs, labels, require_column

    decisions = None if corrections is None else read(corrections)
    loaded = load_hub(path, name=name, revision=revision, data_files=data_files, cache_dir=cache_dir)
    splits = dict(loaded) if isinstance(loaded, dict) else {"train": loaded}
    where = f"dataset {str(path)!r}"
    split, test_split, test_fraction = _pick_split(splits, split, test_split, test_fraction, where)
    names = [split] + ([test_split] if test_split else [])
    parts = [splits[s] for s in names]
    label_column = label_column or _default_label(parts[0], where)
    if text_column is not None and image_column is not None:
        raise ValueError(f"give image_column or text_column, not both (image_column={image_column!r}, "
                         f"text_column={text_column!r})")  # fmt: skip
    image_column = None if text_column else _image_column(parts[0], image_column, where)
    for ds, part in zip(parts, names):
        at = f"{where} split {part!r}"
        require_column(ds, label_column, "label_column", at)
        if image_column is not None:
            require_column(ds, image_column, "image_column", at)
    ids = [f"{part}/{row}" for ds, part in zip(parts, names) for row in range(len(ds))]
    y, classes = labels(parts, label_column, where)
    options = {"ids": ids, "corrections": decisions}
    if image_column is not None:
        x, kept = _images(parts, names, image_column, ids, size, where, cache_dir)
    else:
        x, made = inputs(parts, label_column, feature_columns, text_column, max_features, where)
        kept, options = np.arange(len(ids)), {**options, **made}
    y = y[kept]
    dataset_name = str(path).rstrip("/").rsplit("/", 1)[-1]
    if test_split is None:
        return split_dataset(dataset_name, x, y, classes, test_fraction, split_seed, positions=kept, **options)
    train = kept < len(parts[0])
    return dataset(dataset_name, x[train], y[train], x[~train], y[~train], classes, train_index=kept[train],
                   test_index=kept[~train], **options)  # fmt: skip
