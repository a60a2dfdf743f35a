"""Decoded data cached on disk: one uncompressed ``.npz`` per key, written atomically.

The key describes everything the arrays depend on (for a folder: its files, their sizes and mtimes,
and the decoding parameters), so a changed source is decoded again and an unchanged one loads at
once. The folder is ``cache_dir`` when given, else ``$JAL_PLUGINS_CACHE``, else
``$XDG_CACHE_HOME/jal-plugins`` (``~/.cache/jal-plugins``).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

VERSION = 1  # bump when the decoding changes, so old entries are not reused


def default_cache_dir() -> Path:
    """``$JAL_PLUGINS_CACHE``, else ``$XDG_CACHE_HOME/jal-plugins``, else ``~/.cache/jal-plugins``."""
    if os.environ.get("JAL_PLUGINS_CACHE"):
        return Path(os.environ["JAL_PLUGINS_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jal-plugins"


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed ``.npz`` at exactly ``path``."""
    with open(path, "wb") as fh:  # a file object: np.savez would add ".npz" to the temporary name
        np.savez(fh, **arrays)


def cached(kind: str, key, build: Callable[[], dict[str, np.ndarray]], cache_dir=None) -> dict[str, np.ndarray]:
    """The arrays stored for ``(kind, key)``, or ``build()``'s, stored for next time."""
    from jal_plugins.report import atomic_write
    from jal_plugins.results import writable_folder

    folder = writable_folder(Path(cache_dir).expanduser() if cache_dir else default_cache_dir(), "cache_dir")
    digest = hashlib.sha256(json.dumps([VERSION, kind, key], sort_keys=True).encode()).hexdigest()[:32]
    path = folder / f"{kind}-{digest}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass  # a damaged entry (a disk that filled up) is decoded again and replaced
    arrays = build()
    atomic_write(path, lambda tmp: write_npz(tmp, arrays))
    return arrays
