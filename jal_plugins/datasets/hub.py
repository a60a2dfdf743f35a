"""Datasets from the Hugging Face Hub or a local copy of its files, through the ``datasets`` library.

``datasets`` is imported on first use, so importing the package stays fast.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np


# A single data file is loaded by the builder of its format.
BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


@contextlib.contextmanager
def quiet():
    """``datasets``' progress bars off while loading: a command's stderr keeps to its own lines."""
    import datasets

    was_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


def load_hub(path: str, *, revision: str | None = None, cache_dir: str | None = None, **kwargs):
    """``datasets.load_dataset(path, ...)`` for a Hub id, a local dataset folder or a single data file.

    A folder written by ``save_to_disk`` is read with ``load_from_disk``; a ``.parquet``, ``.arrow``,
    ``.csv``, ``.tsv`` or ``.json(l)`` file with the builder of its format. An unreachable Hub becomes
    a FileNotFoundError that says so.
    """
    import datasets

    local = Path(str(path)).expanduser()
    with quiet():
        if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
            return datasets.load_from_disk(str(local))
        if local.is_file():
            if local.suffix.lower() not in BUILDERS:
                raise ValueError(f"{str(path)!r}: cannot read {local.suffix or 'extensionless'} files; "
                                 f"give a {', '.join(BUILDERS)} file or a dataset folder")  # fmt: skip
            kwargs = {**kwargs, "data_files": str(local)}
            kwargs.update({"delimiter": "\t"} if local.suffix.lower() == ".tsv" else {})
            path = BUILDERS[local.suffix.lower()]
        try:
            return datasets.load_dataset(path, revision=revision, cache_dir=cache_dir, **kwargs)
        except ConnectionError as exc:
            raise FileNotFoundError(f"cannot load {path!r}: {exc} (offline? pass a local folder or files)") from exc


def load_cifar_base(base: str, *, revision: str | None = None, cache_dir: str | None = None):
    """CIFAR from a Hub id or a local folder holding the Hub's files, as a ``DatasetDict`` (train, test).

    Columns are normalised to ``img`` and ``label`` (CIFAR-100's ``fine_label``). Pin ``revision``
    for reproducible Hub downloads; with ``HF_HUB_OFFLINE=1`` only cached or local copies load.
    """
    import datasets

    loaded = load_hub(base, revision=revision, cache_dir=cache_dir)
    missing = {"train", "test"} - set(loaded)
    if missing:
        raise ValueError(f"{base!r} has splits {sorted(loaded)}; a CIFAR base needs train and test")
    out = {}
    for split, ds in loaded.items():
        label = "label" if "label" in ds.column_names else "fine_label"
        if "img" not in ds.column_names or label not in ds.column_names:
            raise ValueError(f"{base!r} {split} has columns {ds.column_names}; expected img and label/fine_label")
        ds = ds.select_columns(["img", label])
        out[split] = ds.rename_column(label, "label") if label != "label" else ds
    return datasets.DatasetDict(out)


def to_arrays(ds, image: str = "img", label: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """(NCHW uint8 images, int64 labels) of a dataset with an image and a label column."""
    batch = ds.with_format("numpy")[:]
    images = np.asarray(batch[image])
    if images.ndim == 3:
        images = images[..., None]
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), np.asarray(batch[label], np.int64)
