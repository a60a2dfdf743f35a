"""How many labels are wrong? Count estimators side by side on audits kept by ``audit_vs_anchors.py``.

    python benchmarks/audit_vs_anchors.py digits fashion-sym fashion-asym --anchors "" --keep runs/audit-bench
    python benchmarks/audit_vs_anchors.py cifar10n-worst cifar10n-aggre --anchors "" --keep runs/audit-cifar
    python benchmarks/audit_counts.py runs/audit-bench/* runs/audit-cifar/*

For each kept source (its ``audit/pred_probs.npz`` and ``truth.npz``), the true number of wrong labels
and, as a multiple of it: cleanlab's confident joint (off-diagonal), ``find_label_issues``'s flagged
set, the confident joint of the probabilities tempered to the given labels (the temperature that
maximises their likelihood), the labels' disagreements with the surer half of the predictions (the
audit's count until 2026-12-07) and the audit's own count (``jal_plugins.audit.estimate_issues``:
the surest tenth) with its bootstrap interval. Then the same count from other surest fractions
(the sweep that chose the tenth), and by tenths of confidence, surest first: how often the labels
disagree with the predictions, how many labels are wrong and how often the networks are.
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


FRACTIONS = (0.5, 0.3, 0.2, 0.1, 0.05)


def by_tenths(probs: np.ndarray, given: np.ndarray, clean: np.ndarray) -> list[str]:
    """Per tenth of confidence, surest first: disagreement with the labels / wrong labels / network mistakes (%)."""
    order = np.argsort(-probs.max(1), kind="stable")
    predicted = probs.argmax(1)
    return [f"{100 * (predicted[t] != given[t]).mean():.1f}/{100 * (clean[t] != given[t]).mean():.1f}/"
            f"{100 * (predicted[t] != clean[t]).mean():.1f}" for t in np.array_split(order, 10)]  # fmt: skip


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
        # the audit's class numbers (its sorted class names) from the source's, through the given labels
        to_audit = dict(zip(truth["given"][rows].tolist(), given.tolist()))
        clean = np.asarray([to_audit.get(c, -1) for c in truth["clean"][rows].tolist()])
        wrong = int((clean != given).sum())
        counts = {
            "confident joint": num_label_issues(given, probs, estimation_method="off_diagonal"),
            "find_label_issues": int(find_label_issues(given, probs, n_jobs=1).sum()),
            "tempered joint": num_label_issues(given, tempered(probs, given), estimation_method="off_diagonal"),
            "surer half": round(len(given) * (1 - label_keep_rate(probs, given))),
        }
        estimate = estimate_issues(given, probs)
        print(json.dumps({"source": folder.name, "wrong": wrong, **{k: f"{v} ({v / wrong:.2f}x)" for k, v in counts.items()},
                          "audit (surest tenth)": "{count} ({ratio:.2f}x), 95 % interval {interval[0]}-{interval[1]}".format(
                              ratio=estimate["count"] / wrong, **estimate),
                          "surest fraction": {f"{q:g}": f"{len(given) * (1 - label_keep_rate(probs, given, sure=q)) / wrong:.2f}x"
                                              for q in FRACTIONS},
                          "tenths: disagree/wrong/network wrong %": by_tenths(probs, given, clean)}))  # fmt: skip


if __name__ == "__main__":
    main()
