"""How many labels are wrong? Count estimators side by side on audits kept by ``audit_vs_anchors.py``.

    python benchmarks/audit_vs_anchors.py digits fashion-sym fashion-asym --anchors "" --keep runs/audit-bench
    python benchmarks/audit_vs_anchors.py cifar10n-worst cifar10n-aggre --anchors "" --keep runs/audit-cifar
    python benchmarks/audit_counts.py runs/audit-bench/* runs/audit-cifar/*

For each kept source (its ``audit/pred_probs.npz`` and ``truth.npz``), the true number of wrong labels
and, as a multiple of it: cleanlab's confident joint (off-diagonal), ``find_label_issues``'s flagged
set, the confident joint of the probabilities tempered to the given labels (the temperature that
maximises their likelihood), the labels' disagreements with the surer half of the predictions (the
audit's count until 2026-12-07) and the audit's own count (``jal_plugins.audit.estimate_issues``:
the surest tenth) with its bootstrap interval.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar


def tempered(probs: np.ndarray, given: np.ndarray) -> np.ndarray:
    log = np.log(np.clip(probs, 1e-12, 1))
    rows = np.arange(len(given))

    def softmax(t):
        z = np.exp(log / t - (log / t).max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    best = minimize_scalar(lambda u: -np.log(softmax(np.exp(u))[rows, given]).mean(),
                           bounds=(np.log(0.05), np.log(20.0)), method="bounded")  # fmt: skip
    return softmax(np.exp(best.x))


def main() -> None:
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues

    from jal_plugins.audit import estimate_issues
    from jal_plugins.selection import label_keep_rate

    for folder in map(Path, sys.argv[1:]):
        with np.load(folder / "audit" / "pred_probs.npz") as f:
            ids, given, probs = f["id"], f["given"], f["pred_probs"].astype(np.float64)
        truth = np.load(folder / "truth.npz")
        rows = np.asarray([int(Path(str(i)).stem) for i in ids])  # a table's row, or a folder's 00012.png
        wrong = int((truth["clean"][rows] != truth["given"][rows]).sum())
        counts = {
            "confident joint": num_label_issues(given, probs, estimation_method="off_diagonal"),
            "find_label_issues": int(find_label_issues(given, probs, n_jobs=1).sum()),
            "tempered joint": num_label_issues(given, tempered(probs, given), estimation_method="off_diagonal"),
            "surer half": round(len(given) * (1 - label_keep_rate(probs, given))),
        }
        estimate = estimate_issues(given, probs)
        print(json.dumps({"source": folder.name, "wrong": wrong, **{k: f"{v} ({v / wrong:.2f}x)" for k, v in counts.items()},
                          "audit (surest tenth)": "{count} ({ratio:.2f}x), 95 % interval {interval[0]}-{interval[1]}".format(
                              ratio=estimate["count"] / wrong, **estimate)}))  # fmt: skip


if __name__ == "__main__":
    main()
