"""Cross-fitting: out-of-sample probabilities of every training row, one checkpointable epoch at a time."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from jal_plugins.checks import integer

FOLD_SEED = 200_003  # seed offset of the fold networks


def check_folds(folds) -> int:
    return integer("folds", folds, low=2)


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (training rows, held-out rows) pairs, stratified on ``labels``, shuffled with ``seed``."""
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))


def as_tensor(a):  # checkpoints hold tensors, not arrays, so they load with weights_only=True
    return None if a is None else torch.from_numpy(a)


def as_array(t):
    return None if t is None else t.cpu().numpy()


class CrossFit:
    """Out-of-sample probabilities by ``folds``-fold cross-fitting, one epoch per ``step`` (checkpointable).

    Fold ``i`` trains a fresh network with ``loss`` for ``epochs`` (default: the recipe's) on the other
    folds and predicts its own rows; ``probs`` is complete once ``done``.
    """

    def __init__(self, context, folds: int, loss: str = "ce", epochs: int | None = None):
        self.context, self.folds, self.loss = context, check_folds(folds), loss
        context.loss_module(loss)  # an unknown loss fails now, not after the first fold
        self.epochs_per_fold = epochs or context.config(loss).epochs
        self.fold = 0
        self.trainer = None
        self.probs: np.ndarray | None = None
        self._splits = None  # derived from the labels on first use
        self._fit_part = None  # the current fold's training rows, copied once per fold

    @property
    def epochs(self) -> int:
        return self.folds * self.epochs_per_fold

    @property
    def epoch(self) -> int:
        return self.fold * self.epochs_per_fold + (self.trainer.epoch if self.trainer else 0)

    @property
    def done(self) -> bool:
        return self.fold == self.folds

    def step(self, data) -> dict:
        """One epoch of the current fold's network; its held-out rows are predicted when it finishes."""
        if self._splits is None:
            labels = data.y.cpu().numpy()
            self._splits = stratified_folds(labels, self.folds, self.context.seed)
            if self.probs is None:
                self.probs = np.zeros((len(labels), self.context.num_classes))
        fit_rows, held_rows = self._splits[self.fold]
        if self.trainer is None:
            self.trainer = self.context.trainer(self.loss, FOLD_SEED + self.fold, epochs=self.epochs_per_fold)
        if self._fit_part is None:
            self._fit_part = data.subset(fit_rows)
        stats = dict(self.trainer.train_epoch(self._fit_part), fold=self.fold)
        if self.trainer.epoch == self.epochs_per_fold:
            logits = self.trainer.logits(data.subset(held_rows))
            self.probs[held_rows] = torch.softmax(logits.double(), 1).cpu().numpy()
            self.fold, self.trainer, self._fit_part = self.fold + 1, None, None
        return stats

    def to(self, device):
        if self.trainer is not None:
            self.trainer.to(device)
        self._fit_part = None
        self.context = replace(self.context, device=torch.device(device))
        return self

    def state_dict(self) -> dict:
        trainer = self.trainer.state_dict() if self.trainer else None
        return {"fold": self.fold, "probs": as_tensor(self.probs), "trainer": trainer}

    def load_state_dict(self, state: dict) -> None:
        self.fold, self.probs, self.trainer, self._fit_part = state["fold"], as_array(state["probs"]), None, None
        if state["trainer"] is not None:
            self.trainer = self.context.trainer(self.loss, FOLD_SEED + self.fold, epochs=self.epochs_per_fold)
            self.trainer.load_state_dict(state["trainer"])


def out_of_sample_probs(context, data, folds: int, loss: str = "ce") -> np.ndarray:
    """Probabilities of every row from a network that never saw it (``folds``-fold cross-fitting)."""
    fit = CrossFit(context, folds, loss)
    while not fit.done:
        fit.step(data)
    return fit.probs


def estimate_noise_rate(context, data, folds: int = 3) -> float:
    """Fraction of noisy labels from cleanlab's confident joint on out-of-sample probabilities."""
    from cleanlab.count import estimate_joint

    joint = estimate_joint(data.y.cpu().numpy(), out_of_sample_probs(context, data, folds))
    return float(1 - np.trace(joint))
