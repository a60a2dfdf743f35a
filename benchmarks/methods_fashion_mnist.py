"""DivideMix and ELR beside the losses on the `cpu-fashion-mnist` suite's data at 80 % symmetric noise.

The suite's runs (10,000 class-balanced Fashion-MNIST training images, cnn4 at width 1/2, the mnist
recipe cut to 50 epochs; CE, NCE+RCE, JAL-CE) plus the same runs of CE under ``dividemix`` and
``elr``, each with the method's defaults (the ``mnist`` preset has no method entries). Prints test
accuracy (mean ± std over seeds) and the mean seconds per run:

    python benchmarks/methods_fashion_mnist.py --out runs/methods-fashion-mnist    # rerun to resume
    python benchmarks/methods_fashion_mnist.py --methods-only                      # DivideMix and ELR only

Minutes per run on a CPU core (a DivideMix run costs about four erm runs).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from jal_plugins.bench import KEYS, suite_jobs
from jal_plugins.report import comparison, comparison_table
from jal_plugins.runner import run_jobs

METHODS = {"dividemix": ["ce"], "elr": ["ce"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/methods-fashion-mnist", help="results folder (rerun to resume)")
    parser.add_argument("--seeds", type=int, help="seeds per cell (default: the suite's)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--methods-only", action="store_true",
                        help="train only the methods' runs (the losses' are `jal-plugins bench cpu-fashion-mnist`'s)")
    args = parser.parse_args()
    suite, _, _ = suite_jobs("cpu-fashion-mnist", args.seeds, device="cpu")
    extra = [replace(job, method=method) for job in suite for method, losses in METHODS.items() if job.loss in losses]
    start = time.perf_counter()
    # the methods first: they take longest, and the losses' runs are the suite's own
    jobs = extra if args.methods_only else extra + suite
    records = run_jobs(jobs, Path(args.out), workers=args.workers, stack=1)
    elapsed = time.perf_counter() - start
    print("fashion-mnist (10,000 train images), symmetric:0.8: test accuracy (%) after the last epoch\n")
    records = sorted(records, key=lambda r: r["method"] != "erm")  # the losses' rows first
    print(comparison_table(comparison(records, KEYS, {}), KEYS))
    for key in dict.fromkeys((r["method"], r["loss"]) for r in records):
        runs = [r["seconds"] for r in records if (r["method"], r["loss"]) == key]
        print(f"{' '.join(key)}: {sum(runs) / len(runs):.0f} s per run")
    print(f"\n{len(records)} runs, {elapsed:.0f} s this call ({args.workers} worker processes); results in {args.out}")


if __name__ == "__main__":
    main()
