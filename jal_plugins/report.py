"""Reports of run records: mean ± std over seeds as Markdown, beside reference numbers, and bar charts."""

from __future__ import annotations

import json
import os
from pathlib import Path


def atomic_write(path: Path, write) -> None:
    """``write(tmp)`` then rename over ``path``: readers never see a half-written file, and two
    processes writing the same file never share a temporary one."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def loss_labels(records: list[dict]) -> list[dict]:
    """``records`` with ``loss`` naming what tells runs of one loss apart: ``jal-ce (tuned, 8 candidates)``
    for a run that searched its parameters, ``jal-ce,a=10`` beside ``jal-ce,a=30`` for fixed ones,
    and plain ``jal-ce`` where all its fixed runs share their parameters."""
    from jal_plugins.specs import format_spec

    variants: dict[str, list[dict]] = {}
    for r in records:
        if not r.get("search"):
            variants.setdefault(r["loss"], []).append(r.get("loss_params") or {})
    differ = {
        loss: sorted({k for p in params for k in p if len({json.dumps(q.get(k)) for q in params}) > 1})
        for loss, params in variants.items()
    }

    def label(r: dict) -> str:
        if r.get("search"):
            return f"{r['loss']} (tuned, {r['search']['candidates']} candidates)"
        if differ[r["loss"]]:
            return format_spec(r["loss"], {k: r["loss_params"].get(k) for k in differ[r["loss"]]}, first="")
        return r["loss"]

    return [{**r, "loss": label(r)} for r in records]


def accuracies(records: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[float]]:
    """Test accuracies (×100) grouped by the values of ``keys``, in first-seen order; diverged runs
    keep their group but add no accuracy. Runs of one loss with other parameters are other groups."""
    groups: dict[tuple, list[float]] = {}
    for r in loss_labels(records):
        accs = groups.setdefault(tuple(r[k] for k in keys), [])
        if r.get("status", "ok") == "ok":
            accs.append(r["test_accuracy"] * 100)
    return groups


def diverged(records: list[dict], keys: tuple[str, ...]) -> dict[tuple, int]:
    """Diverged runs per group of ``keys``."""
    counts: dict[tuple, int] = {}
    for r in loss_labels(records):
        if r.get("status") == "diverged":
            key = tuple(r[k] for k in keys)
            counts[key] = counts.get(key, 0) + 1
    return counts


def _cell(accs: list[float], lost: int) -> str:
    """``mean ± std``, with diverged runs said, or ``diverged`` when every run of the cell did."""
    if not accs:
        return "diverged" if lost else "–"
    text = "{:.1f} ± {:.1f}".format(*mean_std(accs))
    return f"{text} ({lost} diverged)" if lost else text


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample (n − 1) standard deviation, as the papers report; std 0 for one value."""
    import numpy as np

    a = np.asarray(values, float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def matrix(records: list[dict], rows: tuple[str, ...] = ("noise",), cols: tuple[str, ...] = ("loss",)) -> str:
    """Markdown table of test accuracy, mean ± std over seeds, ``rows`` × ``cols`` (tuples of record keys)."""
    groups = accuracies(records, rows + cols)
    lost = diverged(records, rows + cols)
    row_keys = list(dict.fromkeys(k[: len(rows)] for k in groups))
    col_keys = list(dict.fromkeys(k[len(rows) :] for k in groups))
    name = lambda key: " ".join(map(str, key))  # noqa: E731
    lines = [f"| {name(rows)} | " + " | ".join(map(name, col_keys)) + " |", "|---" * (len(col_keys) + 1) + "|"]
    for rk in row_keys:
        cells = [_cell(groups[rk + ck], lost.get(rk + ck, 0)) if rk + ck in groups else "–" for ck in col_keys]
        lines.append(f"| {name(rk)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison(records: list[dict], keys: tuple[str, ...], reference: dict[tuple, float],
               notes: dict[tuple, str] | None = None) -> list[dict]:  # fmt: skip
    """One row per ``keys`` group: runs, mean, std, the reference number (with its note) and the difference."""
    rows = []
    lost = diverged(records, keys)
    for group, accs in accuracies(records, keys).items():
        mean, std = mean_std(accs) if accs else (None, None)
        ref = reference.get(group)
        rows.append({**dict(zip(keys, group)), "runs": len(accs), "diverged": lost.get(group, 0),
                     "mean": None if mean is None else round(mean, 2), "std": None if std is None else round(std, 2),
                     "paper": ref, "delta": None if ref is None or mean is None else round(mean - ref, 2),
                     "note": (notes or {}).get(group)})  # fmt: skip
    return rows


def comparison_table(rows: list[dict], keys: tuple[str, ...]) -> str:
    """Markdown of ``comparison`` rows: ours (mean ± std) beside the paper's number."""
    lines = ["| " + " | ".join(keys) + " | runs | ours | paper | Δ |", "|---" * (len(keys) + 4) + "|"]
    for r in rows:
        paper = "–" if r["paper"] is None else f"{r['paper']:.2f}" + (f" ({r['note']})" if r.get("note") else "")
        delta = "–" if r["delta"] is None else f"{r['delta']:+.1f}"
        ours = "diverged" if r["mean"] is None else f"{r['mean']:.1f} ± {r['std']:.1f}"
        ours += f" ({r['diverged']} diverged)" if r["diverged"] and r["mean"] is not None else ""
        cells = [str(r[k]) for k in keys] + [str(r["runs"]), ours, paper, delta]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pyplot(cache: Path | None = None):
    """matplotlib's pyplot on the file-only Agg backend (None without matplotlib); its font cache under
    ``cache/matplotlib`` when given, unless ``MPLCONFIGDIR`` says where."""
    if cache is not None:  # matplotlib reads MPLCONFIGDIR once, on import; its default is in the home folder
        os.environ.setdefault("MPLCONFIGDIR", str(Path(cache).resolve() / "matplotlib"))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def bar_chart(records, groups: tuple[str, ...], series: tuple[str, ...], path: Path, title: str,
              reference: dict[tuple, float] | None = None) -> Path | None:  # fmt: skip
    """Bars of mean accuracy per ``groups`` (x) and ``series`` (colour); reference numbers as black ticks.

    Returns None when matplotlib is not installed.
    """
    plt = pyplot()
    if plt is None:
        return None
    import numpy as np

    accs = accuracies(records, groups + series)
    xs = list(dict.fromkeys(k[: len(groups)] for k in accs))
    bars = list(dict.fromkeys(k[len(groups) :] for k in accs))
    fig, ax = plt.subplots(figsize=(1.6 + 0.35 * len(xs) * len(bars) + 0.4 * len(xs), 3.8))
    width = 0.8 / len(bars)
    for i, bar in enumerate(bars):
        stats = [mean_std(accs[x + bar]) if accs.get(x + bar) else (np.nan, 0.0) for x in xs]
        pos = np.arange(len(xs)) + i * width
        ax.bar(pos, [m for m, _ in stats], width, yerr=[s for _, s in stats], capsize=2, label=" ".join(map(str, bar)))
        refs = [(reference or {}).get(x + bar) for x in xs]
        ax.scatter(pos, [np.nan if r is None else r for r in refs], marker="_", s=120, color="black", zorder=3)
    ax.set_xticks(np.arange(len(xs)) + 0.4 - width / 2, [" ".join(map(str, x)) for x in xs], fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title + (" (black ticks: paper)" if reference else ""), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    return path
