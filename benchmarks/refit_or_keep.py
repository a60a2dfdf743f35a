"""a='auto' on noisy digits: refit the winning candidate on all the labels, or keep it as selected?

The selection trains its candidates on the training rows of each fold (``registry.toml``
``[search] folds``: 2 halves, each scored on the other; 1: 80 % scored on 20 %) and scores them
on the held-out rows. This script trains the same selections as ``JALClassifier()`` and reports, on
the clean test labels, the winner as trained in the selection ("keep", the mean of its fold
networks), the winner's settings refit on all the labels ("refit", what the estimator does) and the
best candidate in hindsight ("oracle", the same mean), mean over seeds, and the median seconds of
the selection (the candidates as stacks), of the refit and of one plain fit
(``JALClassifier(loss_params={"a": 30}, calibrate=False)``). ``--candidates`` also prints every
candidate's held-out score (noisy labels) beside its clean test accuracy:

    python benchmarks/refit_or_keep.py
    python benchmarks/refit_or_keep.py --seeds 0 --noises pairflip:0.4 --candidates

Same data and split as ``benchmarks/choose_a.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def one(x, noisy, x_test, y_test, seed, **params) -> dict:
    from jal_plugins import JALClassifier
    from jal_plugins.loop import train

    est = JALClassifier(random_state=seed, **params)
    features, labels = est._validate(x, noisy)
    labels = est._encode(labels)
    est._build(features, labels)
    selections, data, test = est.trainer_, est._data(features, labels), est._data(x_test)
    seen, refit = {}, selections._refit

    def scored(runs):  # the candidates' clean test accuracy, read before the refit replaces them
        seen["test"] = (selections.trainer.logits(test).argmax(2).cpu().numpy() == y_test).mean(1)
        refit(runs)

    selections._refit = scored
    start = time.perf_counter()
    train(selections, data, until=selections.select_epochs)
    selection = time.perf_counter() - start
    start = time.perf_counter()
    train(selections, data)
    refit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    JALClassifier(random_state=seed, loss_params={"a": 30}, calibrate=False).fit(x, noisy)
    plain = time.perf_counter() - start
    slots = selections.members[0]  # a candidate's runs, one per fold: its accuracy is their mean
    candidates = np.array([seen["test"][fold].mean() for fold in slots])
    info, chosen = selections.info(0), selections.chosen[0]
    return {"keep": float(candidates[chosen]), "refit": float(selections.accuracies(test.relabelled(y_test))[0]),
            "oracle": float(candidates.max()), "selection_s": selection, "refit_s": refit_seconds, "plain_s": plain,
            "grid": info["candidates"], "scores": info["held_out_accuracy"], "test": candidates.tolist(),
            "chosen": chosen}  # fmt: skip


def main():
    from sklearn.datasets import load_digits

    from jal_plugins import create_noise_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--noises", nargs="+", default=["symmetric:0.4", "symmetric:0.6", "pairflip:0.4"])
    parser.add_argument("--candidates", action="store_true", help="every candidate's held-out score and test accuracy")
    args = parser.parse_args()
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    idx = np.random.default_rng(0).permutation(len(y))
    test, train = idx[:500], idx[500:]
    print("| noise | keep (as selected) | refit (all) | oracle candidate | selection s | refit s | plain fit s |")
    print("|---|---|---|---|---|---|---|")
    for noise in args.noises:
        name, rate = noise.split(":")
        rows = []
        for seed in args.seeds:
            noisy = create_noise_model(name, rate=float(rate), exact=False).apply(y[train], 10, seed=seed)
            rows.append(one(x[train], noisy, x[test], y[test], seed))
            if args.candidates:
                r = rows[-1]
                for i, (c, s, t) in enumerate(zip(r["grid"], r["scores"], r["test"])):
                    mark = "*" if i == r["chosen"] else " "
                    print(f"  {noise} seed {seed} {mark} {c} held-out {s} test {t:.3f}")
        mean = {k: 100 * np.mean([r[k] for r in rows]) for k in ("keep", "refit", "oracle")}
        secs = [np.median([r[k] for r in rows]) for k in ("selection_s", "refit_s", "plain_s")]
        print(f"| {noise} | {mean['keep']:.1f} | {mean['refit']:.1f} | {mean['oracle']:.1f} | "
              + " | ".join(f"{t:.1f}" for t in secs) + " |", flush=True)


if __name__ == "__main__":
    main()
