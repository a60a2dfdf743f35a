"""Why ``losses.base`` takes a CPU's softmax over the first axis of the transposed logits for few classes.

    python benchmarks/softmax_axis.py              # one torch thread, as each worker process has
    python benchmarks/softmax_axis.py --threads 2

Times forward + backward of ``log_softmax`` and ``softmax`` of ``(N, K)`` logits both ways (over the
last axis, and over the first axis of the transpose, what ``log_probs``/``probs`` do when K < 16),
the best of 7 repeats of 50, and prints the largest difference between the two results. N = 64 is
one run's batch, 1,024 and 4,096 a stack of 16 and 64 runs.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F


def seconds(fn, x: torch.Tensor, grad: torch.Tensor) -> float:
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(50):
            fn(x).backward(grad)
        best = min(best, (time.perf_counter() - start) / 50)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); microseconds, forward + backward")
    print("| function | N | K | last axis | first axis of the transpose | largest difference |")
    print("|---|---|---|---|---|---|")
    for fn in (F.log_softmax, F.softmax):
        for n in (64, 1024, 4096):
            for k in (2, 10, 16, 100):
                x = torch.randn(n, k, generator=torch.Generator().manual_seed(k), requires_grad=True)
                grad = torch.randn(n, k)
                last = seconds(lambda z: fn(z, dim=1), x, grad)
                first = seconds(lambda z: fn(z.t(), dim=0).t(), x, grad)
                diff = (fn(x, dim=1) - fn(x.t(), dim=0).t()).abs().max().item()
                print(f"| {fn.__name__} | {n} | {k} | {last * 1e6:.0f} | {first * 1e6:.0f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
