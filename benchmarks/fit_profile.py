"""Where a tuned ``JALClassifier(loss=L)`` fit on noisy digits spends its time.

    python benchmarks/fit_profile.py gce --threads 2 --repeat 3 --profile

Times ``--repeat`` fits (after a short warm-up fit, so imports do not count) with ``--threads``
torch threads, then, with ``--profile``, prints the cProfile of one more by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time


def main() -> None:
    import torch
    from choose_params import noisy_labels
    from digits_split import digits_split

    from jal_plugins import JALClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loss", nargs="?", default="gce")
    parser.add_argument("--noise", default="symmetric:0.4")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y, train, _ = digits_split()
    noisy = noisy_labels(args.noise, y[train], 0)
    JALClassifier(loss=args.loss, random_state=0, epochs=2).fit(x[train], noisy)
    for _ in range(args.repeat):
        start = time.perf_counter()
        JALClassifier(loss=args.loss, random_state=0).fit(x[train], noisy)
        print(f"{args.loss}, {args.threads} threads: {time.perf_counter() - start:.2f} s", flush=True)
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(JALClassifier(loss=args.loss, random_state=0).fit, x[train], noisy)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
