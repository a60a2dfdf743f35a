"""a='auto' on noisy digits: refit the winning candidate on all the labels, or keep it as selected?

The selection trains its candidates on the training rows of each fold (``registry.toml``
``[search] folds``: 2 halves, each scored on the other; 1: 80 % scored on 20 %) and scores them
on the held-out rows. This script trains the same selections as ``JALClassifier()`` and reports, on
the clean test labels, the winner as trained in the selection ("keep", the mean of its fold
networks), the winner's settings refit on all the labels ("refit", what the estimator does) and the
best candidate in hindsight ("oracle", the same mean), mean over seeds, and the median seconds of
the selection (the candidates as stacks), of the refit and of one plain fit
(``JALClassifier(tune=False, calibrate=False)``, the loss's defaults). ``--candidates`` also prints every
candidate's held-out score (noisy labels) beside its clean test accuracy; ``--fixed`` adds each
candidate fitted alone on all the labels (what its refit would be) and, for the fold networks and
that fit, the classes the network predicts for under 2 % of the test rows (a class it never learned):

    python benchmarks/refit_or_keep.py
    python benchmarks/refit_or_keep.py --seeds 0 --noises pairflip:0.4 --candidates
    python benchmarks/refit_or_keep.py --loss nce+rce --noises symmetric:0.6 --candidates --fixed

Same data, split and noise as ``benchmarks/choose_params.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


RARE = 0.02  # a class predicted for fewer of the test rows than this was not learned


def rare_classes(predicted: np.ndarray, k: int = 10) -> int:
    """How many of the ``k`` classes the predictions ``(..., N)`` name for under ``RARE`` of the rows."""
    return int((np.bincount(predicted, minlength=k) < RARE * len(predicted)).sum())


def one(x, noisy, x_test, y_test, seed, fixed=False, **params) -> dict:
    from jal_plugins import JALClassifier
    from jal_plugins.loop import train

    est = JALClassifier(random_state=seed, **params)
    features, labels = est._validate(x, noisy)
    labels = est._encode(labels)
    est._build(features, labels)
    selections, data, test = est.trainer_, est._data(features, labels), est._data(x_test)
    seen, refit = {}, selections._refit

    def scored(runs):  # the candidates' clean test accuracy, read before the refit replaces them
        predicted = selections.trainer.logits(test).argmax(2).cpu().numpy()
        seen["test"], seen["rare"] = (predicted == y_test).mean(1), [rare_classes(p) for p in predicted]
        refit(runs)

    selections._refit = scored
    start = time.perf_counter()
    train(selections, data, until=selections.select_epochs)
    selection = time.perf_counter() - start
    start = time.perf_counter()
    train(selections, data)
    refit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    JALClassifier(random_state=seed, tune=False, calibrate=False, **params).fit(x, noisy)
    plain = time.perf_counter() - start
    slots = selections.members[0]  # a candidate's runs, one per fold: its accuracy is their mean
    candidates = np.array([seen["test"][fold].mean() for fold in slots])
    info, chosen = selections.info(0), selections.chosen[0]
    return {"keep": float(candidates[chosen]), "refit": float(selections.accuracies(test.relabelled(y_test))[0]),
            "oracle": float(candidates.max()), "selection_s": selection, "refit_s": refit_seconds, "plain_s": plain,
            "grid": info["candidates"], "scores": info["held_out_accuracy"], "test": candidates.tolist(),
            "chosen": chosen, "rare": [[seen["rare"][i] for i in fold] for fold in slots],
            "fixed": [alone(x, noisy, x_test, y_test, seed, c, **params) for c in info["candidates"]] if fixed else None}  # fmt: skip


def alone(x, noisy, x_test, y_test, seed, candidate, **params) -> tuple[float, int]:
    """A candidate fitted alone on all the labels: its test accuracy and its classes hardly predicted."""
    from jal_plugins import JALClassifier

    est = JALClassifier(random_state=seed, tune=False, calibrate=False, loss_params=candidate["loss_params"],
                        weight_decay=candidate["config"].get("weight_decay"), **params).fit(x, noisy)  # fmt: skip
    predicted = est.predict(x_test)
    return float((predicted == y_test).mean()), rare_classes(predicted)


def main():
    from choose_params import noisy_labels
    from digits_split import digits_split

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--noises", nargs="+", default=["symmetric:0.4", "symmetric:0.6", "pairflip:0.4"])
    parser.add_argument("--loss", default="jal-ce")
    parser.add_argument("--candidates", action="store_true", help="every candidate's held-out score and test accuracy")
    parser.add_argument("--fixed", action="store_true", help="with --candidates: each candidate fitted alone on all the labels")
    args = parser.parse_args()
    x, y, train, test = digits_split()
    x = x.astype(np.float32)
    print("| noise | keep (as selected) | refit (all) | oracle candidate | selection s | refit s | plain fit s |")
    print("|---|---|---|---|---|---|---|")
    for noise in args.noises:
        rows = []
        for seed in args.seeds:
            noisy = noisy_labels(noise, y[train], seed)
            rows.append(one(x[train], noisy, x[test], y[test], seed, fixed=args.candidates and args.fixed, loss=args.loss))
            if args.candidates:
                r = rows[-1]
                for i, (c, s, t) in enumerate(zip(r["grid"], r["scores"], r["test"])):
                    mark = "*" if i == r["chosen"] else " "
                    line = f"  {noise} seed {seed} {mark} {c} held-out {s:.3f} test {t:.3f}"
                    if r["fixed"]:
                        line += f" (rare classes {r['rare'][i]}); alone on all {r['fixed'][i][0]:.3f} (rare {r['fixed'][i][1]})"
                    print(line, flush=True)
        mean = {k: 100 * np.mean([r[k] for r in rows]) for k in ("keep", "refit", "oracle")}
        secs = [np.median([r[k] for r in rows]) for k in ("selection_s", "refit_s", "plain_s")]
        print(f"| {noise} | {mean['keep']:.1f} | {mean['refit']:.1f} | {mean['oracle']:.1f} | "
              + " | ".join(f"{t:.1f}" for t in secs) + " |", flush=True)
        if rows[0]["fixed"]:
            hindsight = max(np.mean([r["fixed"][c][0] for r in rows]) for c in range(len(rows[0]["grid"])))
            print(f"  {noise}: the best candidate fitted alone (in hindsight) {100 * hindsight:.1f}; the winner's refit, "
                  f"or its fold networks where the refit has more rare classes than they do, {100 * np.mean([guarded(r) for r in rows]):.1f}")


def guarded(row: dict) -> float:
    """The winner's refit, unless it hardly predicts more classes than its fold networks: then their accuracy."""
    chosen = row["chosen"]
    return row["keep"] if row["fixed"][chosen][1] > max(row["rare"][chosen]) else row["fixed"][chosen][0]


if __name__ == "__main__":
    main()
