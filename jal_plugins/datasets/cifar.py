"""CIFAR-10/100 and CIFAR-10N/100N as arrays in the original train order.

Sources: a Hugging Face Hub id (``uoft-cs/cifar10``), a local directory with the Hub's parquet files,
a torchvision-style ``cifar-10-batches-py`` / ``cifar-100-python`` folder, or an ``.npz`` (the JPEG
format of ``cifar10-jpeg.npz``, an exact subset with ``train_index``, or plain ``x_train``... arrays).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jal_plugins.datasets.arrays import ArrayDataset, as_nchw
from jal_plugins.labelfiles import HUB_CIFAR10_BLOCKS, align, block_order, read_label_arrays, safe_unpickle

HUB_IDS = {"cifar10": "uoft-cs/cifar10", "cifar100": "uoft-cs/cifar100"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
# The recipes' normalisation (losses-and-noise.md §5.1).
NORMALIZE = {
    "cifar10": ((0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# CIFAR-N label set -> key in the CIFAR-N file (which spells "worst" as "worse_label").
LABEL_SETS = {
    "cifar10": {"clean": "clean_label", "aggre": "aggre_label", "random1": "random_label1",
                "random2": "random_label2", "random3": "random_label3", "worst": "worse_label"},
    "cifar100": {"clean": "clean_label", "noisy": "noisy_label"},
}  # fmt: skip
LABEL_FILES = {"cifar10": "CIFAR-10_human.pt", "cifar100": "CIFAR-100_human.pt"}


@dataclass
class Source:
    """CIFAR as read from a source, before alignment. Images are NCHW uint8 or encoded bytes."""

    x_train: np.ndarray | list
    y_train: np.ndarray
    x_test: np.ndarray | list
    y_test: np.ndarray
    index: np.ndarray | None  # each train row's original position; None: unknown (Hub layout)
    class_names: list[str] | None = None


def base_name(dataset: str) -> str:
    """``cifar10`` for cifar10/cifar10n, ``cifar100`` for cifar100/cifar100n."""
    name = dataset.lower()
    name = name[:-1] if name.endswith("n") else name
    if name not in HUB_IDS:
        raise ValueError(f"unknown CIFAR dataset {dataset!r} (known: cifar10, cifar100, cifar10n, cifar100n)")
    return name


def read_cifar_n(labels_file, dataset: str) -> dict[str, np.ndarray]:
    """The arrays of a CIFAR-N label file, checked to hold every label set of ``dataset``."""
    name = base_name(dataset)
    if labels_file is None:
        raise ValueError(
            f"{name}n needs labels_file=PATH to {LABEL_FILES[name]} (CIFAR-N labels, CC BY-NC 4.0, so not "
            "shipped): download it from https://github.com/UCSC-REAL/cifar-10-100n (folder data/)"
        )
    arrays = read_label_arrays(labels_file)
    missing = [k for k in LABEL_SETS[name].values() if k not in arrays]
    if missing:
        raise ValueError(f"label file {str(labels_file)!r} is not a {name}n file: it lacks {missing}")
    return arrays


def decode(images) -> np.ndarray:
    """Encoded images (PNG/JPEG bytes) -> NCHW uint8; arrays pass through as NCHW."""
    if isinstance(images, np.ndarray):
        return as_nchw(images)
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in images]).transpose(0, 3, 1, 2)


def _read_npz(path: Path) -> Source:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    if "train_jpeg" in arrays:  # concatenated JPEG files with offsets, original order

        def split(name):
            blob, off = arrays[f"{name}_jpeg"], arrays[f"{name}_offsets"]
            return [blob[off[i] : off[i + 1]].tobytes() for i in range(len(off) - 1)]

        x_train, x_test = split("train"), split("test")
        return Source(x_train, arrays["y_train"], x_test, arrays["y_test"], np.arange(len(x_train)))
    if "train_index" in arrays:  # an exact subset: rows carry their original positions
        tr, te = arrays["train_index"], arrays["test_index"]
        return Source(as_nchw(arrays["x_train"]), arrays["y_train_all"][tr], as_nchw(arrays["x_test"]),
                      arrays["y_test_all"][te], tr.astype(np.int64))  # fmt: skip
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: not a CIFAR npz (needs train_jpeg, train_index or x_train...; lacks {missing})")
    return Source(as_nchw(arrays["x_train"]), arrays["y_train"], as_nchw(arrays["x_test"]), arrays["y_test"],
                  np.arange(len(arrays["y_train"])))  # fmt: skip


def _read_batches(folder: Path, name: str) -> Source:
    def load(file):
        batch = safe_unpickle((folder / file).read_bytes())
        labels = batch.get("labels", batch.get("fine_labels"))
        return np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(labels, np.int64)

    if name == "cifar10":
        parts = [load(f"data_batch_{i}") for i in range(1, 6)]
        x_train, y_train = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        (x_test, y_test), meta, key = load("test_batch"), "batches.meta", "label_names"
    else:
        (x_train, y_train), (x_test, y_test), meta, key = load("train"), load("test"), "meta", "fine_label_names"
    names = safe_unpickle((folder / meta).read_bytes()).get(key) if (folder / meta).is_file() else None
    return Source(x_train, y_train, x_test, y_test, np.arange(len(y_train)), names)


def _batches_folder(path: Path, name: str) -> Path | None:
    marker = "data_batch_1" if name == "cifar10" else "train"
    for folder in (path, path / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")):
        if (folder / marker).is_file() and not (folder / marker).suffix:
            return folder
    return None


def read_local(source: str, dataset: str) -> Source | None:
    """CIFAR from an .npz or a python-batches folder; None for a Hub id or a folder in the Hub's layout."""
    name = base_name(dataset)
    path = Path(str(source)).expanduser()
    if path.is_file():
        if path.suffix != ".npz":
            raise ValueError(f"CIFAR source {str(source)!r}: expected a folder, a Hub id or an .npz file")
        return _read_npz(path)
    if path.is_dir():
        folder = _batches_folder(path, name)
        return _read_batches(folder, name) if folder else None
    if path.is_absolute() or str(source).startswith(".") or str(source).count("/") != 1:
        raise FileNotFoundError(f"CIFAR source {str(source)!r} is neither an existing path nor a Hub id (owner/name)")
    return None


def read_source(source: str, dataset: str, revision: str | None = None, cache_dir: str | None = None) -> Source:
    """Read CIFAR from ``source`` (Hub id, Hub-layout folder, python batches folder or .npz)."""
    local = read_local(source, dataset)
    if local is not None:
        return local
    from jal_plugins.datasets.hub import load_cifar_base, to_arrays

    base = load_cifar_base(str(source), revision=revision, cache_dir=cache_dir)
    x_train, y_train = to_arrays(base["train"])
    x_test, y_test = to_arrays(base["test"])
    return Source(x_train, y_train, x_test, y_test, None, base["train"].features["label"].names)


def _default_index(name: str, n: int) -> np.ndarray:
    # Without a label file to check against, trust the Hub's documented order (ecosystem.md §5.2).
    return block_order(n, HUB_CIFAR10_BLOCKS) if name == "cifar10" and n % 5 == 0 else np.arange(n)


def load(dataset: str, source: str | None = None, labels_file: str | None = None, revision: str | None = None,
         cache_dir: str | None = None) -> ArrayDataset:  # fmt: skip
    """CIFAR-10/100 (or CIFAR-N with ``labels_file``) as an ``ArrayDataset`` in the original train order."""
    name = base_name(dataset)
    noisy = dataset.lower().endswith("n")
    arrays = read_cifar_n(labels_file, name) if noisy else {}  # fail on a bad file before reading images
    src = read_source(source or HUB_IDS[name], name, revision, cache_dir)
    if noisy:
        index = align(arrays["clean_label"], src.y_train, src.index, what=f"label file {labels_file!r}")
    else:
        index = src.index if src.index is not None else _default_index(name, len(src.y_train))
    order = np.argsort(index, kind="stable")  # rows in original order: label-file noise models line up
    sets = {label_set: arrays[key][index[order]] for label_set, key in LABEL_SETS[name].items()} if noisy else {}
    x = src.x_train
    x_train = decode(x)[order] if isinstance(x, np.ndarray) else decode([x[i] for i in order])  # decode once
    mean, std = NORMALIZE[name]
    names = src.class_names or (CIFAR10_CLASSES if name == "cifar10" else None)
    names = names if names is not None and len(names) == NUM_CLASSES[name] else None  # a source's own, if they fit
    return ArrayDataset(
        dataset.lower(), x_train, np.asarray(src.y_train, np.int64)[order], decode(src.x_test),
        np.asarray(src.y_test, np.int64), NUM_CLASSES[name], list(mean), list(std), sets, index[order],
        class_names=None if names is None else list(names),
    )  # fmt: skip


def cifar10(source: str = HUB_IDS["cifar10"], revision: str | None = None, cache_dir: str | None = None):
    """CIFAR-10 from the Hub (pin ``revision``), a local Hub copy, python batches or an .npz."""
    return load("cifar10", source, None, revision, cache_dir)


def cifar100(source: str = HUB_IDS["cifar100"], revision: str | None = None, cache_dir: str | None = None):
    """CIFAR-100 (fine labels) from the Hub, a local Hub copy, python batches or an .npz."""
    return load("cifar100", source, None, revision, cache_dir)


def cifar10n(source: str = HUB_IDS["cifar10"], labels_file: str | None = None, revision: str | None = None,
             cache_dir: str | None = None):  # fmt: skip
    """CIFAR-10 with CIFAR-10N's human label sets (noise specs ``aggre``, ``random1..3``, ``worst``)."""
    return load("cifar10n", source, labels_file, revision, cache_dir)


def cifar100n(source: str = HUB_IDS["cifar100"], labels_file: str | None = None, revision: str | None = None,
              cache_dir: str | None = None):  # fmt: skip
    """CIFAR-100 with CIFAR-100N's human labels (noise spec ``noisy``)."""
    return load("cifar100n", source, labels_file, revision, cache_dir)
