"""JALClassifier with a="auto" on noisy digits: accuracy beside fixed a, calibration, CleanLearning, time.

Digits scaled to [0, 1]; 500 rows held out with their clean labels for testing; label noise drawn per
sample on the other 1,297 (noise seed = model seed = s for s in --seeds).

    python benchmarks/choose_a.py                # the issue's table: 3 seeds, four noises
    python benchmarks/choose_a.py --seeds 0 --noises symmetric:0.4
    python benchmarks/choose_a.py --seeds 3 4 5 --cleanlearning none --params '{"module_params": {"hidden": [256]}}'

``--params`` (JSON) is passed to every ``JALClassifier`` of the table: the same comparison under other
estimator settings.

Columns: JALClassifier() (a chosen, calibrated), fixed a in {5, 10, 20, 30, 50} (calibrate=False),
the same estimator with nce+rce and gce, scikit-learn's MLPClassifier, skorch with CE on the same MLP
and recipe when skorch is installed (``pip install skorch``); accuracy on clean test labels
(mean over seeds), the expected calibration error (15 bins, clean test labels) of the default and of
its uncalibrated twin, fit seconds; CleanLearning with JALClassifier() vs with MLPClassifier on the
same folds: accuracy and the precision of the flagged issues. Writes benchmarks/results/choose_a.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np

FIXED = (5, 10, 20, 30, 50)


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(sum(abs(correct[index == b].mean() - confidence[index == b].mean()) * (index == b).mean()
                     for b in range(bins) if (index == b).any()))  # fmt: skip


def timed(estimator, x, y):
    start = time.perf_counter()
    estimator.fit(x, y)
    return estimator, time.perf_counter() - start


def main():
    from digits_split import digits_split
    from sklearn.neural_network import MLPClassifier

    from jal_plugins import JALClassifier, create_noise_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--noises", nargs="+", default=["symmetric:0.2", "symmetric:0.4", "symmetric:0.6", "pairflip:0.4"])
    parser.add_argument("--cleanlearning", default="symmetric:0.4", help="the noise of the CleanLearning comparison (none: skip it)")
    parser.add_argument("--params", type=json.loads, default={}, help="JSON of JALClassifier settings for every column")
    parser.add_argument("--json", default="benchmarks/results/choose_a.json")
    args = parser.parse_args()

    x, y, train, test = digits_split()
    rows = []
    jal = functools.partial(JALClassifier, **args.params)
    skorch_ce = skorch_classifier()
    for noise in args.noises:
        name, rate = noise.split(":")
        for seed in args.seeds:
            noisy = create_noise_model(name, rate=float(rate), exact=False).apply(y[train], 10, seed=seed)
            row = {"noise": noise, "seed": seed}
            auto, row["auto_seconds"] = timed(jal(random_state=seed), x[train], noisy)
            row["auto"] = auto.score(x[test], y[test])
            row["chosen"] = {"a": auto.a_, "beta": auto.beta_, "weight_decay": auto.weight_decay_}
            row["ece"] = ece(auto.predict_proba(x[test]), y[test])
            row["temperature"] = auto.temperature_
            for a in FIXED:
                fixed, seconds = timed(jal(random_state=seed, loss_params={"a": a}, calibrate=False), x[train], noisy)
                row[f"a={a}"] = fixed.score(x[test], y[test])
                if a == auto.a_ or a == FIXED[0]:
                    row.setdefault("plain_seconds", seconds)
            twin = jal(random_state=seed, calibrate=False, loss_params={"a": auto.a_, "beta": auto.beta_},
                                 weight_decay=auto.weight_decay_).fit(x[train], noisy)  # fmt: skip
            row["ece_uncalibrated"] = ece(twin.predict_proba(x[test]), y[test])
            for loss in ("nce+rce", "gce"):
                row[loss] = jal(random_state=seed, loss=loss, tune=False, calibrate=False).fit(x[train], noisy).score(x[test], y[test])
            row["mlp"] = MLPClassifier(random_state=seed, max_iter=500).fit(x[train], noisy).score(x[test], y[test])
            if skorch_ce is not None:
                row["skorch ce"] = skorch_ce(seed).fit(x[train].astype(np.float32), noisy).score(x[test].astype(np.float32), y[test])
            if noise == args.cleanlearning:
                row.update(cleanlearning(jal(random_state=seed), x[train], noisy, y[train], x[test], y[test], seed))
            rows.append(row)
            print(json.dumps(row), flush=True)
    table(rows, args.noises)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.json}")


def skorch_classifier():
    """skorch's ``NeuralNetClassifier`` with CE on the estimator's default MLP and recipe (SGD, lr 0.05,
    momentum 0.9, batch 64, 30 epochs, no validation split), if skorch is installed; else None."""
    try:
        import skorch
    except ImportError:
        return None
    import torch

    def make(seed):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(64, 384), torch.nn.ReLU(), torch.nn.Linear(384, 10))
        return skorch.NeuralNetClassifier(net, criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=0.05,
                                          optimizer__momentum=0.9, batch_size=64, max_epochs=30, train_split=None,
                                          verbose=0)  # fmt: skip

    return make


def cleanlearning(jal, x, noisy, clean, x_test, y_test, seed) -> dict:
    from cleanlab.classification import CleanLearning
    from sklearn.neural_network import MLPClassifier

    out = {}
    flipped = noisy != clean
    for name, estimator in (("cl_jal", jal), ("cl_mlp", MLPClassifier(random_state=seed, max_iter=500))):
        cl = CleanLearning(estimator, cv_n_folds=5, seed=seed).fit(x, noisy)
        issues = cl.get_label_issues()["is_label_issue"].to_numpy()
        out[name] = cl.score(x_test, y_test)
        out[f"{name}_precision"] = float((issues & flipped).sum() / max(issues.sum(), 1))
        out[f"{name}_recall"] = float((issues & flipped).sum() / max(flipped.sum(), 1))
    return out


def table(rows: list[dict], noises: list[str]) -> None:
    mean = lambda key, noise: np.mean([r[key] for r in rows if r["noise"] == noise and key in r])  # noqa: E731
    cols = ["auto", *(f"a={a}" for a in FIXED), "nce+rce", "gce", "mlp"]
    cols += ["skorch ce"] if any("skorch ce" in r for r in rows) else []
    print("\n| noise | " + " | ".join(cols) + " | best fixed a − auto | ECE (uncalibrated) | auto fit s (plain fit s) |")
    print("|---" * (len(cols) + 4) + "|")
    for noise in noises:
        best = max(mean(f"a={a}", noise) for a in FIXED)
        cells = [f"{100 * mean(c, noise):.1f}" for c in cols]
        print(f"| {noise} | " + " | ".join(cells) + f" | {100 * (best - mean('auto', noise)):+.1f} | "
              f"{mean('ece', noise):.3f} ({mean('ece_uncalibrated', noise):.3f}) | "
              f"{np.median([r['auto_seconds'] for r in rows if r['noise'] == noise]):.1f} "
              f"({np.median([r['plain_seconds'] for r in rows if r['noise'] == noise]):.1f}) |")  # fmt: skip
    cl = [r for r in rows if "cl_jal" in r]
    if cl:
        print("\n| CleanLearning with | accuracy | issue precision | issue recall |\n|---|---|---|---|")
        for name, label in (("cl_jal", "JALClassifier()"), ("cl_mlp", "MLPClassifier")):
            print(f"| {label} | {100 * np.mean([r[name] for r in cl]):.1f} | {np.mean([r[name + '_precision'] for r in cl]):.3f} | "
                  f"{np.mean([r[name + '_recall'] for r in cl]):.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
