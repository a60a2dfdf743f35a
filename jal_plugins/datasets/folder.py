"""``imagefolder``: a folder of class sub-folders of images, decoded once and cached as uint8 arrays.

``ROOT/CLASS/.../IMAGE``: every sub-folder of ``ROOT`` is a class (named after the folder, sorted),
every image below it an example. Examples are numbered by their position in the sorted list of
relative paths, and named by that path. Hidden files and folders are ignored, and so are files whose
extension is not an image's. An image that cannot be decoded is skipped with a warning naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jal_plugins.datasets.arrays import ArrayDataset

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def list_images(root: Path) -> tuple[list[str], list[str]]:
    """(sorted relative paths of the images, sorted class names); errors name an empty folder or class."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"imagefolder {str(root)!r} has no class sub-folders (expected {root}/CLASS/IMAGE files)")
    files = []
    for name in classes:
        found = [p for p in (root / name).rglob("*")
                 if p.suffix.lower() in EXTENSIONS and _visible(p, root) and p.is_file()]  # fmt: skip
        if not found:
            raise ValueError(f"class folder {str(root / name)!r} has no images ({', '.join(EXTENSIONS)})")
        files += [p.relative_to(root).as_posix() for p in found]
    return sorted(files), classes


def imagefolder(path: str, size: int | None = None, test_fraction: float = 0.2, split_seed: int = 0,
                cache_dir: str | None = None, corrections: str | None = None) -> ArrayDataset:  # fmt: skip
    """Images in class sub-folders of ``path``, resized to ``size`` (default: their own size when all are
    square and alike, else 32), colour or grayscale as they are; a stratified ``test_fraction`` held out.

    Decoded images are cached in ``cache_dir`` (see ``jal_plugins.datasets.cache``), keyed by the
    relative paths, sizes and modification times of the files and by ``size``: a second load only
    lists and stats the files. ``corrections``: a reviewed ``decisions.csv`` relabels and drops
    examples (``jal_plugins.datasets.corrections``); the files themselves are left as they are.
    """
    from jal_plugins.datasets.corrections import read
    from jal_plugins.datasets.images import load_images
    from jal_plugins.datasets.labelled import check_classes, split_dataset

    decisions = None if corrections is None else read(corrections)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"imagefolder: folder {str(path)!r} does not exist")
    where = f"imagefolder {str(root)!r}"
    files, classes = list_images(root)
    check_classes(classes, where)
    stats = [(root / f).stat() for f in files]
    key = {"files": files, "bytes": [s.st_size for s in stats], "mtimes": [s.st_mtime_ns for s in stats], "size": size}
    x, kept = load_images("imagefolder", key, lambda: [root / f for f in files], files, size, where, cache_dir)
    code = {name: k for k, name in enumerate(classes)}
    labels = np.asarray([code[files[row].split("/", 1)[0]] for row in kept], np.int64)
    return split_dataset(root.name, x, labels, classes, test_fraction, split_seed, positions=kept, ids=files,
                         corrections=decisions)  # fmt: skip
