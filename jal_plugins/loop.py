"""The one epoch loop: any ``engine.Runs`` trained to its end, with what happens after each epoch handed in.

The runner, the audit and the estimator all train through ``train``; what differs between them
(checkpoints, progress, TensorBoard, what a divergence means) are the callbacks they pass. A
callback is any ``callback(runs, stats)``, called after every epoch with each run's statistics
(None for a run that has diverged). The library reports through callbacks, ``logging`` and
``warnings``; only the command line prints.
"""

from __future__ import annotations

import time
from typing import Callable

from jal_plugins.engine import Diverged, Runs, deterministic

Callback = Callable[[Runs, list], None]


def train(runs: Runs, data, labels=None, weights=None, rows=None, *, until: int | None = None, test=None,
          callbacks: tuple[Callback, ...] = (), reproducible: bool = False) -> Runs:  # fmt: skip
    """Train ``runs`` on ``data`` until epoch ``until`` (default: ``runs.epochs``) or until every run
    has diverged; return ``runs``.

    ``labels``/``weights``/``rows`` are ``Runs.train_epoch``'s. After each epoch every live run's
    statistics get ``seconds`` (its share of the epoch's time) and, with ``test`` data,
    ``test_accuracy``; then each callback is called in order. ``reproducible`` runs the loop under
    ``engine.deterministic``.
    """
    until = runs.epochs if until is None else until
    with deterministic(reproducible):
        while runs.epoch < until and not all(d is not None for d in runs.diverged):
            start = time.perf_counter()
            stats = runs.train_epoch(data, labels, weights, rows)
            accuracies = runs.accuracies(test) if test is not None else [None] * runs.runs
            seconds = (time.perf_counter() - start) / runs.runs
            for run_stats, accuracy in zip(stats, accuracies):
                if run_stats is not None:
                    run_stats["seconds"] = seconds
                    if test is not None:
                        run_stats["test_accuracy"] = accuracy
            for callback in callbacks:
                callback(runs, stats)
    return runs


def raise_divergence(name: Callable[[int], str] | None = None) -> Callback:
    """A callback that raises the first run's ``Diverged`` as soon as any run diverges, its reason
    prefixed with ``name(run)`` (an audit's fold, say) when given."""

    def check(runs: Runs, stats: list) -> None:
        for run, error in enumerate(runs.diverged):
            if error is not None:
                raise error if name is None else Diverged(error.epoch, f"{name(run)}: {error.reason}")

    return check


SAVE_SHARE = 0.05  # of the training time a checkpoint may cost (now_and_then)


def now_and_then(save: Callback, share: float = SAVE_SHARE) -> Callback:
    """``save`` (a checkpoint) as a callback that costs about ``share`` of the training at most: after
    the first epoch, after the last, and in between whenever the epochs since the last call took
    ``1 / share`` times as long as that call did. A kill loses at most that much training."""
    last = {"end": None, "cost": 0.0}

    def maybe(runs: Runs, stats: list) -> None:
        now = time.perf_counter()
        final = runs.epoch >= runs.epochs
        if last["end"] is not None and not final and (now - last["end"]) * share < last["cost"]:
            return
        save(runs, stats)
        end = time.perf_counter()
        last.update(end=end, cost=end - now)

    return maybe
