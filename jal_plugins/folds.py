"""Out-of-fold predictions: networks trained on all but one fold of the labels, each predicting its fold.

One splitter (``splits``: stratified, seeded; a class seen once is only ever trained on) and one
``engine.Runs`` of cross-fitted networks (``OutOfFold``, trained as stacks of the measured size)
serve the search of a selection, the audit and ``cleanlab-prune``.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import torch

from jal_plugins.checks import integer

HOLDOUT = 0.2  # held out by a single split (k = 1)
FOLD_SEED = 200_003  # seed offset of fold networks, apart from any run's own seed
ENSEMBLE_STRIDE = 1_000  # seed offset between the networks of one fold (more folds than this: never)


def check_folds(folds) -> int:
    return integer("folds", folds, low=2)


def splits(labels: np.ndarray, k: int, seed: int, *, who: str = "cross-fitting",
           remedy: str = "use fewer folds or more data") -> list[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """Stratified, seeded ``(train rows, held-out rows)`` pairs: ``k``-fold (``k >= 2``: every row
    held out once) or, with ``k = 1``, one split holding out ``HOLDOUT`` of the rows.

    A class seen once is only trained on: held out, the networks would never see it (small folds of
    ``CleanLearning`` hit this). Too few rows to hold out one of every class raise ``ValueError``
    naming ``who`` holds them out and the ``remedy``.
    """
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    alone = np.isin(labels, classes[counts == 1])
    rest = np.flatnonzero(~alone)
    seen = int((counts > 1).sum())
    held = max(round((HOLDOUT if k == 1 else 1 / k) * len(labels)), seen)
    if len(rest) - held < seen:
        raise ValueError(
            f"{who} hold out part of the labels, but {len(labels)} samples of {len(classes)} classes "
            f"({int((counts == 1).sum())} seen once) leave too few to hold out. {remedy}"
        )
    if k == 1:
        split = StratifiedShuffleSplit(1, test_size=held, random_state=seed)
    else:
        split = StratifiedKFold(k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class seen fewer than k times is held out in fewer folds: fine
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        pairs = list(split.split(np.zeros(len(rest)), labels[rest]))
    return [(np.sort(np.r_[np.flatnonzero(alone), rest[train]]), np.sort(rest[test])) for train, test in pairs]


class OutOfFold:
    """Cross-fitted networks as ``engine.Runs``: network i of ``stacks`` (``autostack.Stacks``, or a
    method's ``Learner``) trains on the training rows of fold ``folds[i]`` of ``k``, split with
    ``seeds[i]`` on the labels it is given, and predicts that fold's held-out rows (``held_out``).

    The splits are drawn from the labels on the first epoch (and again after a resume: they are a
    function of the labels and seeds); ``split_options`` go to ``splits``.
    """

    def __init__(self, stacks, k: int, seeds: list[int], folds: list[int], **split_options):
        self.k, self.seeds, self.folds, self.split_options = k, list(seeds), list(folds), split_options
        self.stacks = stacks
        self.runs = stacks.runs
        self._splits: list | None = None
        self._rows: list | None = None

    epoch = property(lambda self: self.stacks.epoch)
    epochs = property(lambda self: self.stacks.epochs)
    histories = property(lambda self: self.stacks.histories)
    diverged = property(lambda self: self.stacks.diverged)
    module = property(lambda self: self.stacks.module)

    def splits(self, labels) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each network's ``(train rows, held-out rows)`` for ``labels`` (``(R, N)`` or ``(N,)``)."""
        if self._splits is None:
            given = np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
            given = np.broadcast_to(given, (self.runs, given.shape[-1]))
            drawn: dict[tuple, list] = {}
            self._splits = []
            for row, seed, fold in zip(given, self.seeds, self.folds):
                key = (seed, hashlib.sha256(np.ascontiguousarray(row).data).hexdigest())
                if key not in drawn:
                    drawn[key] = splits(row, self.k, seed, **self.split_options)
                self._splits.append(drawn[key][fold])
        return self._splits

    def train_epoch(self, data, labels=None, weights=None, rows=None) -> list:
        """One epoch of every network on its fold's training rows (``rows`` are the folds', not given)."""
        if rows is not None:
            raise ValueError("out-of-fold networks train on their folds' rows")
        if self._rows is None:
            device = data.y.device
            self._rows = [torch.as_tensor(train, device=device) for train, _ in self.splits(data.y if labels is None else labels)]
        return self.stacks.train_epoch(data, labels, weights, self._rows)

    def held_out(self, data, labels=None) -> list[tuple[np.ndarray, torch.Tensor]]:
        """Each network's held-out rows and its eval-mode logits of them, in one pass over their union."""
        pairs = self.splits(data.y if labels is None else labels)
        union = np.unique(np.concatenate([held for _, held in pairs]))
        logits = self.stacks.logits(data.subset(union))
        return [(held, logits[i, torch.as_tensor(np.searchsorted(union, held), device=logits.device)])
                for i, (_, held) in enumerate(pairs)]  # fmt: skip

    def probabilities(self, data) -> np.ndarray:
        """``(N, K)`` out-of-fold probabilities of ``data``'s rows: the mean over the networks that held
        each row out (a row none held out, its class seen once, keeps its own label)."""
        return self._out_of_fold(self.held_out(data), data)

    def predictions(self, data) -> tuple[np.ndarray, np.ndarray]:
        """``(out-of-fold probabilities, every network's mean probabilities)`` of ``data``'s rows, both
        ``(N, K)`` and from one pass of every network over every row; the mean counts the networks
        that trained on a row beside those that held it out."""
        z = self.stacks.logits(data)
        held = [(rows, z[i, torch.as_tensor(rows, device=z.device)]) for i, (_, rows) in enumerate(self.splits(data.y))]
        return self._out_of_fold(held, data), torch.softmax(z.double(), 2).mean(0).cpu().numpy()

    @staticmethod
    def _out_of_fold(held: list, data) -> np.ndarray:
        total = np.zeros((len(data.y), held[0][1].shape[1]))
        count = np.zeros(len(data.y))
        for rows, z in held:
            total[rows] += torch.softmax(z.double(), 1).cpu().numpy()
            count[rows] += 1
        alone = count == 0
        total[alone] = np.eye(total.shape[1])[data.y.cpu().numpy()[alone]]
        return total / np.maximum(count, 1)[:, None]

    def logits(self, data) -> torch.Tensor:
        return self.stacks.logits(data)

    def accuracies(self, data) -> list[float]:
        return self.stacks.accuracies(data)

    def info(self, run: int) -> dict:
        return {"fold": self.folds[run]}

    def run_states(self) -> list[dict]:
        """Every network's checkpoint, with the stack sizes it trained in (a resume regroups alike)."""
        return [{**state, "stack_sizes": self.stacks.sizes} for state in self.stacks.run_states()]

    def load_states(self, states: list) -> None:
        saved = {tuple(s["stack_sizes"]) for s in states if s is not None}
        sizes = list(saved.pop()) if len(saved) == 1 else None
        self.stacks.load_states(states, sizes if sizes and sum(sizes) == self.runs else None)

    def to(self, device):
        self.stacks.to(device)
        self._rows = None
        return self


def out_of_fold(context, data, folds: int, loss: str = "ce", epochs: int | None = None) -> OutOfFold:
    """``fold_networks`` trained on ``data``: ``probabilities(data)`` are its out-of-fold predictions."""
    from jal_plugins.loop import train

    return train(fold_networks(context, folds, loss, epochs), data, callbacks=(fold_divergence(folds),))


def fold_divergence(folds: int):
    """A ``loop`` callback raising the first fold network's divergence, named ``fold F of FOLDS``."""
    from jal_plugins.loop import raise_divergence

    return raise_divergence(lambda f: f"fold {f + 1} of {folds}")


def fold_networks(context, folds: int, loss: str | None = None, epochs: int | None = None,
                  ensemble: int = 1) -> OutOfFold:  # fmt: skip
    """``folds`` × ``ensemble`` fresh networks of ``context``'s run (with ``loss``, default the run's;
    ``epochs``, default the recipe's), to cross-fit on the labels they will be given: ``ensemble``
    differently initialised networks per fold, whose predictions ``probabilities`` averages; stacks of
    the measured size."""
    from jal_plugins.autostack import measured_stacks

    integer("ensemble", ensemble, low=1)
    changes = {"epochs": epochs} if epochs else {}
    parts = [context.parts(loss, FOLD_SEED + f + ENSEMBLE_STRIDE * e, **changes) for e in range(ensemble) for f in range(folds)]
    stacks = measured_stacks(parts, context.device, context.input_shape)
    return OutOfFold(stacks, folds, [context.seed] * len(parts), list(range(folds)) * ensemble)


def estimate_noise_rate(context, data, folds: int = 3) -> float:
    """Fraction of noisy labels from cleanlab's confident joint on out-of-fold probabilities."""
    from cleanlab.count import estimate_joint

    joint = estimate_joint(data.y.cpu().numpy(), out_of_fold(context, data, check_folds(folds)).probabilities(data))
    return float(1 - np.trace(joint))


def as_tensor(a):  # checkpoints hold tensors, not arrays, so they load with weights_only=True
    return None if a is None else torch.from_numpy(a)


def as_array(t):
    return None if t is None else t.cpu().numpy()
