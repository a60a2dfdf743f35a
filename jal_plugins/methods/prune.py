"""``cleanlab-prune``: confident learning (Northcutt et al., JAIR 2021) removes likely label errors first."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

FOLD_SEED = 200_003  # seed offset of the fold networks


def check_folds(folds) -> int:
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got folds={folds!r}")
    return folds


def _folds(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))


def _as_tensor(a):  # checkpoints hold tensors, not arrays, so they load with weights_only=True
    return None if a is None else torch.from_numpy(a)


def _as_array(t):
    return None if t is None else t.cpu().numpy()


class CrossFit:
    """Out-of-sample probabilities by ``folds``-fold cross-fitting, one epoch per ``step`` (checkpointable).

    Fold ``i`` trains a fresh network with ``loss`` for ``epochs`` (default: the recipe's) on the other
    folds and predicts its own rows; ``probs`` is complete once ``done``.
    """

    def __init__(self, context, folds: int, loss: str = "ce", epochs: int | None = None):
        self.context, self.folds, self.loss = context, check_folds(folds), loss
        context.build_loss(loss)  # an unknown loss fails now, not after the first fold
        self.epochs_per_fold = epochs or context.build_config(loss).epochs
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
            self._splits = _folds(labels, self.folds, self.context.seed)
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
        return {"fold": self.fold, "probs": _as_tensor(self.probs), "trainer": trainer}

    def load_state_dict(self, state: dict) -> None:
        self.fold, self.probs, self.trainer, self._fit_part = state["fold"], _as_array(state["probs"]), None, None
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


class CleanlabPrune:
    """Cross-fit ``folds`` networks for out-of-sample probabilities, drop cleanlab's label issues, retrain.

    ``cv_loss`` trains the fold networks (default ``ce``: cleanlab wants calibrated probabilities and
    bounded losses give under-confident ones); ``cv_epochs`` their epochs (default: the recipe's);
    ``filter_by`` is cleanlab's ``find_label_issues`` method. The final network trains on the kept
    rows with the run's loss, so ``cleanlab-prune`` + ``jal-ce`` combines cleaning and a robust loss.
    Cost: ``folds`` fits on (folds − 1)/folds of the data, then one fit on the kept rows.
    """

    def __init__(self, context, folds: int = 4, cv_epochs: int | None = None, cv_loss: str = "ce",
                 filter_by: str = "prune_by_noise_rate"):  # fmt: skip
        if cv_epochs is not None and (isinstance(cv_epochs, bool) or not isinstance(cv_epochs, int) or cv_epochs < 1):
            raise ValueError(f"cv_epochs must be a positive integer, got cv_epochs={cv_epochs!r}")
        self.filter_by = filter_by
        self.cv = CrossFit(context, folds, cv_loss, cv_epochs)
        self.final = context.trainer()
        self.keep: np.ndarray | None = None
        self._kept = None  # the kept rows on the device, copied once
        self.history: list[dict] = []

    @property
    def model(self):
        return self.final.model

    @property
    def epochs(self) -> int:
        return self.cv.epochs + self.final.epochs

    @property
    def epoch(self) -> int:
        return self.cv.epoch + self.final.epoch

    def train_epoch(self, data, rank: int = 0, world: int = 1) -> dict:
        if world > 1:
            raise ValueError("cleanlab-prune does not support distributed training; run it on one device")
        if self.keep is None:
            stats = self.cv.step(data)
            if self.cv.done:
                self._prune(data.y.cpu().numpy())
        else:
            if self._kept is None:
                self._kept = data.subset(np.flatnonzero(self.keep))
            stats = self.final.train_epoch(self._kept)
        self.history.append(stats)
        return stats

    def _prune(self, labels: np.ndarray) -> None:
        from cleanlab.filter import find_label_issues

        # n_jobs=1: cleanlab's worker pool relies on fork-inherited globals and breaks in spawned workers
        self.keep = ~find_label_issues(labels, self.cv.probs, filter_by=self.filter_by, n_jobs=1)

    def _active(self):
        """The fold network while cross-fitting (so per-epoch curves mean something), then the final one."""
        return self.cv.trainer if self.keep is None and self.cv.trainer is not None else self.final

    def logits(self, data):
        return self._active().logits(data)

    def accuracy(self, data) -> float:
        return self._active().accuracy(data)

    def to(self, device):
        self.final.to(device)
        self.cv.to(device)
        self._kept = None
        return self

    def info(self) -> dict:
        kept = None if self.keep is None else int(self.keep.sum())
        return {"kept": kept, "removed": None if kept is None else int(self.keep.size - kept)}

    def state_dict(self) -> dict:
        return {"final": self.final.state_dict(), "cv": self.cv.state_dict(), "keep": _as_tensor(self.keep),
                "history": self.history}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.final.load_state_dict(state["final"])
        self.cv.load_state_dict(state["cv"])
        self.keep, self._kept, self.history = _as_array(state["keep"]), None, list(state["history"])
