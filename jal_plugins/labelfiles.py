"""Read label arrays from .npz, .npy and CIFAR-N ``.pt`` files without unpickling arbitrary objects."""

from __future__ import annotations

import codecs
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

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


def _read_pt(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
        if member is None:
            raise ValueError(f"{path} is not a torch zip archive with a data.pkl member")
        data = _NumpyOnlyUnpickler(io.BytesIO(archive.read(member)), encoding="latin1").load()
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
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            raw = {k: npz[k] for k in npz.files}
    elif suffix == ".npy":
        raw = {"labels": np.load(path, allow_pickle=False)}
    else:
        raise ValueError(f"label file {str(path)!r}: unsupported format {suffix!r} (use .pt, .npz or .npy)")
    return {k: np.asarray(v, dtype=np.int64) for k, v in raw.items()}


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
