"""Label files: read .npz, .npy and CIFAR-N ``.pt`` files safely, and align them to a base dataset."""

from __future__ import annotations

import codecs
import io
import itertools
import pickle
import zipfile
from pathlib import Path

import numpy as np

from jal_plugins.checks import class_labels

# The only globals a CIFAR-N .pt (a torch zip holding a pickled dict of NumPy arrays) may reference.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a label file") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("label files may hold NumPy arrays only, not torch tensors")


def safe_unpickle(raw: bytes):
    """Unpickle NumPy arrays, dicts, lists and scalars only (CIFAR-N files, CIFAR python batches)."""
    return _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()


def _read_pt(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            if member is None:
                raise ValueError(f"label file {str(path)!r} is not a torch zip archive with a data.pkl member")
            data = safe_unpickle(archive.read(member))
    except zipfile.BadZipFile:
        raise ValueError(f"label file {str(path)!r} is not a torch .pt file (not a zip archive)") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, expected a dict of label arrays")
    return data


def read_label_arrays(path) -> dict[str, np.ndarray]:
    """All label arrays of a .pt/.npz file as ``{key: int64 array}`` (.npy gives one key, "labels")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        raw = _read_pt(path)
    elif suffix in (".npz", ".npy"):
        try:
            loaded = np.load(path, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"label file {str(path)!r} cannot be read as {suffix}: {exc}") from None
        if suffix == ".npy":
            raw = {"labels": loaded}
        else:
            with loaded as npz:
                raw = {k: npz[k] for k in npz.files}
    else:
        raise ValueError(f"label file {str(path)!r}: unsupported format {suffix!r} (use .pt, .npz or .npy)")
    return {k: class_labels(f"label file {str(path)!r} key {k!r}", v)[0] for k, v in raw.items()}


def read_labels(path, key: str | None = None) -> np.ndarray:
    """One label array; ``key`` may be omitted when the file holds only one."""
    arrays = read_label_arrays(path)
    if key is None:
        if len(arrays) != 1:
            raise ValueError(f"label file {str(path)!r} holds {sorted(arrays)}; pass key=")
        return next(iter(arrays.values()))
    if key not in arrays:
        raise ValueError(f"label file {str(path)!r} has no key {key!r} (keys: {sorted(arrays)})")
    return arrays[key]


# Hugging Face Hub CIFAR-10 train rows: original data_batch 4, 3, 2, 5, 1 (ecosystem.md §5.2).
HUB_CIFAR10_BLOCKS = (3, 2, 1, 4, 0)


def block_order(n: int, perm) -> np.ndarray:
    """``order[row]`` = original index, for ``n`` rows whose equal blocks come in ``perm`` order."""
    size = n // len(perm)
    return np.concatenate([np.arange(b * size, (b + 1) * size) for b in perm])


def block_orders(n: int):
    """Candidate row orders: the identity, the Hub's CIFAR-10 order, then every other order of 5 blocks."""
    yield np.arange(n)
    if n % 5 == 0:
        perms = dict.fromkeys([HUB_CIFAR10_BLOCKS, *itertools.permutations(range(5))])
        for perm in perms:
            if perm != (0, 1, 2, 3, 4):
                yield block_order(n, perm)


def align(reference: np.ndarray, base_labels: np.ndarray, index: np.ndarray | None = None, what="label file"):
    """The original-order index of every base row, checked so that ``reference[index] == base_labels``.

    ``reference`` are the clean labels of a label file in the original order; ``index`` is the known
    original position of each base row (None: unknown, so the block orders of ``block_orders`` are
    tried). Raises ``ValueError`` when no candidate makes every row agree.
    """
    reference, base_labels = np.asarray(reference), np.asarray(base_labels)
    if index is None and reference.size != base_labels.size:
        raise ValueError(f"{what} has {reference.size} labels but the base train split has {base_labels.size} rows")
    candidates = [np.asarray(index)] if index is not None else block_orders(base_labels.size)
    best = None
    for order in candidates:
        if order.size and (order.min() < 0 or order.max() >= reference.size):
            raise ValueError(f"{what} has {reference.size} labels; base rows point up to index {order.max()}")
        mismatched = int(np.count_nonzero(reference[order] != base_labels))
        if mismatched == 0:
            return order
        best = mismatched if best is None else min(best, mismatched)
    raise ValueError(
        f"{what} does not align with the base dataset: even in the closest known row order its clean labels "
        f"disagree with the base labels on {best} of {base_labels.size} rows (is it for another dataset?)"
    )
