"""The review page: one self-contained ``report.html`` to go through an audit's suspects and decide.

Everything is inlined (thumbnails as PNG data URIs, script, style): the file opens offline with a
double-click and can be archived or mailed beside the audit. The page (``review.html``, vanilla JS)
keeps the decisions in the browser's localStorage under the audit's key and exports them as
``decisions.csv`` with the header ``index,id,given_label,action,label`` (``action``: keep, accept,
relabel or drop; ``label``: the resulting class, empty for drop), the format that
``--dataset-param corrections=`` applies.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import struct
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

THUMBNAIL = 64  # px: larger images are shrunk by block means, so 5,000 suspects stay a few MB
VALUES = 32  # a table row's leading values shown per suspect: wide tables would swell the file
COLOURS = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (gray, gray+alpha, RGB, RGBA)


def write_review(path, *, title: str, audit_key: str, names: list[str], rows: list[dict], noise_matrix,
                 summary: dict, inputs: np.ndarray | None = None) -> Path:  # fmt: skip
    """Write the review page to ``path`` (atomically) and return the path.

    ``title``: what the page is about (shown after "Label review: ");
    ``rows``: the suspects worst first, as ``audit`` builds them (``index``, ``id``, ``given_label``,
    ``suggested_label``, ``label_quality``), each with an optional ``text`` the page shows;
    ``inputs``: their inputs, aligned to ``rows``: uint8 NCHW images (shown as thumbnails) or a
    table's rows (N, F) (their values shown), or None; ``noise_matrix``: ``T[true, given]`` (K, K);
    ``summary``: ``examples`` and ``estimated_noise_rate``, and any other entries to show (strings or
    numbers); ``audit_key``: what tells this audit apart (data digest and folder): decisions
    stored in the browser under one key are shown again by every page written with it.
    """
    from jal_plugins.report import atomic_write

    names = [str(n) for n in names]
    matrix = np.asarray(noise_matrix, dtype=float)
    if matrix.shape != (len(names), len(names)):
        k = len(names)
        raise ValueError(f"noise_matrix has shape {matrix.shape}; {k} classes need ({k}, {k})")
    missing = [k for k in ("examples", "estimated_noise_rate") if k not in summary]
    if missing:
        raise ValueError(f"summary lacks {', '.join(missing)}")
    if not audit_key:
        raise ValueError("audit_key is empty: the page needs it to keep each audit's decisions apart")
    column = {n: k for k, n in enumerate(names)}
    suspects = []
    for r in rows:
        suspect = {"i": int(r["index"]), "id": str(r["id"]), "q": float(r["label_quality"])}
        for key, short in (("given_label", "g"), ("suggested_label", "s")):
            if str(r[key]) not in column:
                raise ValueError(f"{key} {r[key]!r} of example {r['index']} is not one of the classes {names}")
            suspect[short] = column[str(r[key])]
        if r.get("text") is not None:
            suspect["text"] = str(r["text"])
        suspects.append(suspect)
    for suspect, shown in zip(suspects, _shown_inputs(inputs, len(suspects))):
        suspect.update(shown)
    data = {"title": title, "key": hashlib.sha256(audit_key.encode()).hexdigest()[:16], "names": names,
            "matrix": np.round(matrix, 4).tolist(), "summary": summary, "rows": suspects}  # fmt: skip
    # "<" escaped: a class name or id holding "</script>" cannot end the data block
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    page = resources.files("jal_plugins").joinpath("review.html").read_text(encoding="utf-8")
    head, rest = page.split("__TITLE__", 1)  # split, not replace: a title or name may hold the other mark
    middle, tail = rest.split("__DATA__", 1)
    page = head + html.escape(title) + middle + payload + tail
    path = Path(path)
    atomic_write(path, lambda p: p.write_text(page, encoding="utf-8"))
    return path


def _shown_inputs(inputs, count: int) -> list[dict]:
    """Per suspect ``{"img": base64 PNG}`` (images), ``{"v": leading values}`` (a table) or ``{}``."""
    if inputs is None:
        return [{}] * count
    inputs = np.asarray(inputs)
    if len(inputs) != count:
        raise ValueError(f"inputs has {len(inputs)} rows for {count} suspects")
    if inputs.ndim == 4:
        if inputs.dtype != np.uint8 or inputs.shape[1] not in COLOURS:
            raise ValueError(f"images must be uint8 NCHW with 1 to 4 channels, not {inputs.dtype} {inputs.shape}")
        return [{"img": base64.b64encode(png(_shrink(image))).decode("ascii")} for image in inputs]
    if inputs.ndim == 2 and np.issubdtype(inputs.dtype, np.number):
        return [{"v": [float(f"{v:.4g}") for v in row[:VALUES]], "w": int(inputs.shape[1])} for row in inputs]
    raise ValueError(f"inputs must be uint8 NCHW images or a numeric (N, F) table, not {inputs.dtype} {inputs.shape}")


def _shrink(image: np.ndarray) -> np.ndarray:
    """A CHW image no larger than ``THUMBNAIL`` on its longer side (means of square blocks)."""
    c, h, w = image.shape
    f = -(-max(h, w) // THUMBNAIL)
    if f == 1:
        return image
    blocks = image[:, : h // f * f, : w // f * f].reshape(c, h // f, f, w // f, f)
    return np.round(blocks.mean((2, 4))).astype(np.uint8)


def png(image: np.ndarray) -> bytes:
    """PNG file bytes of one uint8 CHW image (1 to 4 channels), written with zlib alone."""
    c, h, w = image.shape
    lines = np.ascontiguousarray(image.transpose(1, 2, 0)).reshape(h, w * c)
    # filter "Up" (each byte minus the one above, mod 256): smooth images compress better
    up = np.diff(lines, axis=0, prepend=np.zeros((1, w * c), np.uint8))
    raw = np.hstack([np.full((h, 1), 2, np.uint8), up]).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 8, COLOURS[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
