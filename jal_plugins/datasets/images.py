"""Image files or encoded bytes decoded into one uint8 NCHW array, at one square size.

Grayscale stays one channel when every image is grayscale; otherwise all become RGB (alpha and
palettes dropped). An image that cannot be decoded is skipped with one warning naming it, so one bad
file among thousands does not stop a run; the caller learns which rows were kept.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from jal_plugins.checks import positive_int

DEFAULT_SIZE = 32  # when the images disagree on their size
GRAY = {"1", "L", "LA", "I", "I;16", "F"}
SHOWN = 5  # unreadable images named in the warning


def _open(source):
    from PIL import Image

    return Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)


def _header(source) -> tuple[tuple[int, int], bool] | str:
    """``((width, height), grayscale)`` read from the header, or why the image cannot be read."""
    try:
        with _open(source) as image:
            return image.size, image.mode in GRAY
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds of errors for bad files
        return f"{type(exc).__name__}: {exc}"


def _pixels(source, size: int, mode: str) -> np.ndarray | str:
    """The image as ``size``×``size`` HW or HWC uint8 in ``mode`` (L or RGB), or why it cannot be decoded."""
    from PIL import Image

    try:
        with _open(source) as image:
            image = image.convert(mode)
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - a truncated file fails only when its pixels are read
        return f"{type(exc).__name__}: {exc}"


def _common_size(sizes) -> int:
    """The images' own size when they are all square and of one size, else ``DEFAULT_SIZE``."""
    sizes = set(sizes)
    if len(sizes) == 1:
        ((w, h),) = sizes
        if w == h:
            return w
    return DEFAULT_SIZE


def decode_images(sources, names: list[str], size: int | None, where: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(images (N, C, S, S) uint8, kept rows, {skipped name: why})`` of ``sources`` (paths or bytes).

    ``size`` None: the images' own size when they are all square and of one size, else 32; images of
    another size are resized (stretched) to ``size``×``size``. ``where`` names the source in errors.
    """
    if size is not None:
        positive_int("size", size)
    headers = [_header(s) for s in sources]
    bad = {row: h for row, h in enumerate(headers) if isinstance(h, str)}
    good = [h for h in headers if not isinstance(h, str)]
    size = size or _common_size(wh for wh, _ in good)
    mode = "L" if all(gray for _, gray in good) else "RGB"
    channels = 1 if mode == "L" else 3
    images = np.empty((len(good), size, size, channels), np.uint8)
    kept = []
    for row, source in enumerate(sources):
        pixels = bad.get(row) or _pixels(source, size, mode)
        if isinstance(pixels, str):
            bad[row] = pixels
            continue
        images[len(kept)] = pixels.reshape(size, size, channels)
        kept.append(row)
    if not kept:
        raise ValueError(f"{where}: none of its {len(names)} image(s) can be read ({names[0]}: {bad[0]})")
    skipped = {names[row]: bad[row] for row in sorted(bad)}
    return np.ascontiguousarray(images[: len(kept)].transpose(0, 3, 1, 2)), np.asarray(kept, np.int64), skipped


def _warn_skipped(skipped: dict, where: str) -> None:
    """One warning naming the images that were skipped (and why the first was)."""
    if skipped:
        names = list(skipped)
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        warnings.warn(f"{where}: skipped {len(names)} unreadable image(s): {', '.join(names[:SHOWN])}{more} "
                      f"({names[0]}: {skipped[names[0]]})", stacklevel=3)  # fmt: skip


def load_images(kind: str, key, sources, names: list[str], size, where: str, cache_dir):
    """``decode_images(sources(), ...)`` through the disk cache (``jal_plugins.datasets.cache``):
    ``(images, kept rows)``. Skipped images are warned about on every load, cached or not."""
    from jal_plugins.datasets.cache import cached

    def build():
        x, kept, skipped = decode_images(sources(), names, size, where)
        why = np.asarray(list(skipped.values()), str)
        return {"x": x, "kept": kept, "skipped": np.asarray(list(skipped), str), "why": why}

    arrays = cached(kind, key, build, cache_dir)
    _warn_skipped(dict(zip(arrays["skipped"].tolist(), arrays["why"].tolist())), where)
    return arrays["x"], arrays["kept"]
