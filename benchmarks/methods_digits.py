"""Sample selection beside the robust losses on digits at 60 % symmetric noise: accuracy and time per run.

Trains the digits recipe (cnn4, 60 epochs) with every (method, loss) row below for each seed, each
run alone (no stacking, so its seconds are its own), and prints test accuracy (mean ± std over seeds),
the gain over ERM + CE and the mean wall time per run (training and evaluation epochs, as recorded):

    python benchmarks/methods_digits.py --out runs/methods-digits-60      # rerun to resume

Noise is drawn per sample (``exact=false``), as in the demo: with ~130 images a class the exact-count
generator would cut 60 % to a lower rate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from jal_plugins.job import Job
from jal_plugins.report import accuracies, mean_std
from jal_plugins.runner import run_jobs

NOISE = "symmetric:0.6,exact=false"
ROWS = [("erm", loss) for loss in ("ce", "gce", "nce+rce", "anl-ce", "jal-ce")] + [
    ("co-teaching", "ce"), ("cleanlab-prune", "ce"), ("dividemix", "ce"), ("dividemix", "jal-ce"),
    ("elr", "ce"), ("elr", "jal-ce"),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/methods-digits-60", help="results folder (rerun to resume)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    jobs = [Job("digits", NOISE, loss, seed, method=method, device="cpu")
            for method, loss in ROWS for seed in range(args.seeds)]  # fmt: skip
    start = time.perf_counter()
    records = run_jobs(jobs, Path(args.out), workers=args.workers, stack=1)
    elapsed = time.perf_counter() - start
    accs = accuracies(records, ("method", "loss"))
    seconds = {key: [r["seconds"] for r in records if (r["method"], r["loss"]) == key] for key in accs}
    base = mean_std(accs[("erm", "ce")])[0]
    print(f"digits, {NOISE}: test accuracy (%), mean ± std over {args.seeds} seeds; seconds per run (mean)\n")
    print("| method | loss | accuracy | vs erm+ce | seconds / run |\n|---|---|---|---|---|")
    for (method, loss), values in accs.items():
        mean, std = mean_std(values)
        per_run = sum(seconds[(method, loss)]) / len(seconds[(method, loss)])
        print(f"| {method} | {loss} | {mean:.1f} ± {std:.1f} | {mean - base:+.1f} | {per_run:.1f} |")
    print(f"\n{len(records)} runs, {elapsed:.0f} s this call ({args.workers} worker processes); results in {args.out}")


if __name__ == "__main__":
    main()
