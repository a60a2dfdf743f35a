"""Every loss tuned the same way on noisy digits: the preset, the tuned default, and the best candidate in hindsight.

Digits scaled to [0, 1]; 500 rows held out with their clean labels for testing; label noise drawn per
sample on the other 1,297 (noise seed = model seed = s for s in --seeds).

    python benchmarks/choose_params.py                       # 5 losses x 5 noises x 3 seeds
    python benchmarks/choose_params.py --losses gce --noises pairflip:0.4 --seeds 0

For each loss, noise and seed: ``preset`` is ``JALClassifier(loss=L, tune=False)`` (the loss's
default parameters, no weight decay); ``tuned`` is ``JALClassifier(loss=L)`` (its search space of
``registry.toml``, 8 candidates, two folds of the noisy labels, calibrated), timed; every candidate
is then fitted on all the noisy labels with its settings fixed (the network the refit trains), and
scored on the clean test labels. ``hindsight`` is the best of those; the *selection regret* is
hindsight minus the candidate a criterion chose, for each criterion of ``selection.CRITERIA`` (the
tuned fit records every criterion's scores). Writes benchmarks/results/choose_params.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

LOSSES = ("ce", "gce", "nce+rce", "anl-ce", "jal-ce")
NOISES = ("symmetric:0.2", "symmetric:0.4", "symmetric:0.6", "asymmetric:0.4", "pairflip:0.4")


def noisy_labels(spec: str, labels: np.ndarray, seed: int) -> np.ndarray:
    from jal_plugins import create_noise_model

    name, rate = spec.split(":")
    extra = {"mapping": "mnist"} if name == "asymmetric" else {"exact": False}
    return create_noise_model(name, rate=float(rate), **extra).apply(labels, 10, seed=seed)


def main():
    from digits_split import digits_split

    from jal_plugins import JALClassifier, selection

    selection.RECORDED = tuple(selection.CRITERIA)  # every criterion's scores, to compare what each would choose

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses", nargs="+", default=list(LOSSES))
    parser.add_argument("--noises", nargs="+", default=list(NOISES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", default="benchmarks/results/choose_params.json")
    args = parser.parse_args()

    x, y, train, test = digits_split()
    rows = []
    for noise in args.noises:
        for seed in args.seeds:
            noisy = noisy_labels(noise, y[train], seed)
            for loss in args.losses:
                row = {"noise": noise, "seed": seed, "loss": loss}
                preset = JALClassifier(loss=loss, tune=False, calibrate=False, random_state=seed).fit(x[train], noisy)
                row["preset"] = preset.score(x[test], y[test])
                start = time.perf_counter()
                tuned = JALClassifier(loss=loss, random_state=seed).fit(x[train], noisy)
                row["seconds"] = time.perf_counter() - start
                row["tuned"] = tuned.score(x[test], y[test])
                info = tuned.trainer_.info(0)
                row["candidates"] = info["candidates"]
                row["criteria"] = {name: info["held_out_accuracy" if name == "noisy-accuracy" else "corrected_accuracy"]
                                   for name in selection.CRITERIA}  # fmt: skip
                row["fixed"] = []
                for candidate in info["candidates"]:
                    fixed = JALClassifier(loss=loss, loss_params=candidate["loss_params"], tune=False, calibrate=False,
                                          weight_decay=candidate["config"].get("weight_decay"), random_state=seed)
                    row["fixed"].append(fixed.fit(x[train], noisy).score(x[test], y[test]))
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k not in ("candidates", "criteria")}), flush=True)
    table(rows, args.losses, args.noises, list(selection.CRITERIA))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.json}")


def chosen(row: dict, criterion: str) -> float:
    """The clean test accuracy of the candidate ``criterion`` ranks first (its refit, fitted fixed)."""
    scores = row["criteria"][criterion]
    best = max((c for c, s in enumerate(scores) if s is not None), key=lambda c: scores[c])
    return row["fixed"][best]


def table(rows: list[dict], losses: list[str], noises: list[str], criteria: list[str]) -> None:
    def mean(values):
        return 100 * float(np.mean(values))

    print("\nTest accuracy (%), mean over seeds; regret = best candidate in hindsight − the candidate chosen\n")
    head = ["noise", "loss", "preset", "tuned", "hindsight", *(f"regret ({c})" for c in criteria), "fit s (median)"]
    print("| " + " | ".join(head) + " |\n" + "|---" * len(head) + "|")
    for noise in noises:
        for loss in losses:
            mine = [r for r in rows if r["noise"] == noise and r["loss"] == loss]
            if not mine:
                continue
            hindsight = mean([max(r["fixed"]) for r in mine])
            regrets = [f"{hindsight - mean([chosen(r, c) for r in mine]):.1f}" for c in criteria]
            print(f"| {noise} | {loss} | {mean([r['preset'] for r in mine]):.1f} | {mean([r['tuned'] for r in mine]):.1f} | "
                  f"{hindsight:.1f} | " + " | ".join(regrets) + f" | {np.median([r['seconds'] for r in mine]):.1f} |")  # fmt: skip
    print("\nMean regret per criterion over every loss and noise:",
          ", ".join(f"{c} {np.mean([100 * (max(r['fixed']) - chosen(r, c)) for r in rows]):.2f}" for c in criteria))  # fmt: skip


if __name__ == "__main__":
    main()
