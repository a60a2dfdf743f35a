"""a='auto' on noisy digits: refit the winning candidate on all the labels, or keep it as selected?

The selection trains its candidates on 80 % of the noisy labels and scores them on the other 20 %.
This script trains the same selections as ``JALClassifier()`` and reports, on the clean test labels,
the winner as trained on 80 % ("keep"), the winner's settings refit on all the labels ("refit",
what the estimator does) and the best candidate in hindsight ("oracle"), mean over seeds, and the
median seconds of the selection (8 candidates as one stack on 80 % of the rows), of the refit and
of one plain fit (``JALClassifier(loss_params={"a": 30}, calibrate=False)``):

    python benchmarks/refit_or_keep.py
    python benchmarks/refit_or_keep.py --seeds 0 --noises pairflip:0.4

Same data and split as ``benchmarks/choose_a.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def one(x, noisy, x_test, y_test, seed) -> dict:
    from jal_plugins import JALClassifier

    est = JALClassifier(random_state=seed)
    features, labels = est._validate(x, noisy)
    labels = est._encode(labels)
    est._build(features, labels)
    held, data, test = est.trainer_, est._data(features, labels), est._data(x_test)
    start = time.perf_counter()
    for _ in range(held.select_epochs):
        held._select_epoch(data)
    selection = time.perf_counter() - start
    candidates = (held.stack.logits(test).argmax(2).cpu().numpy() == y_test).mean(1)
    held._choose(data)
    start = time.perf_counter()
    for _ in range(held.select_epochs):
        held.train_epoch(data)
    refit_seconds = time.perf_counter() - start
    refit = float((held.logits(test).argmax(1).cpu().numpy() == y_test).mean())
    start = time.perf_counter()
    JALClassifier(random_state=seed, loss_params={"a": 30}, calibrate=False).fit(x, noisy)
    plain = time.perf_counter() - start
    return {"keep": float(candidates[held.chosen]), "refit": refit, "oracle": float(candidates.max()),
            "selection_s": selection, "refit_s": refit_seconds, "plain_s": plain}  # fmt: skip


def main():
    from sklearn.datasets import load_digits

    from jal_plugins import create_noise_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--noises", nargs="+", default=["symmetric:0.4", "symmetric:0.6", "pairflip:0.4"])
    args = parser.parse_args()
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    idx = np.random.default_rng(0).permutation(len(y))
    test, train = idx[:500], idx[500:]
    print("| noise | keep (80 %) | refit (all) | oracle candidate | selection s | refit s | plain fit s |")
    print("|---|---|---|---|---|---|---|")
    for noise in args.noises:
        name, rate = noise.split(":")
        rows = []
        for seed in args.seeds:
            noisy = create_noise_model(name, rate=float(rate), exact=False).apply(y[train], 10, seed=seed)
            rows.append(one(x[train], noisy, x[test], y[test], seed))
        mean = {k: 100 * np.mean([r[k] for r in rows]) for k in ("keep", "refit", "oracle")}
        secs = [np.median([r[k] for r in rows]) for k in ("selection_s", "refit_s", "plain_s")]
        print(f"| {noise} | {mean['keep']:.1f} | {mean['refit']:.1f} | {mean['oracle']:.1f} | "
              + " | ".join(f"{t:.1f}" for t in secs) + " |", flush=True)


if __name__ == "__main__":
    main()
