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


def out_of_sample_probs(context, data, folds: int, loss: str = "ce") -> np.ndarray:
    """Probabilities of every row from a network that never saw it (``folds``-fold cross-fitting)."""
    labels = data.y.cpu().numpy()
    probs = np.zeros((len(labels), context.num_classes))
    for i, (fit_rows, held_rows) in enumerate(_folds(labels, check_folds(folds), context.seed)):
        trainer = context.trainer(loss, seed_offset=FOLD_SEED + i)
        part = data.subset(fit_rows)
        while trainer.epoch < trainer.epochs:
            trainer.train_epoch(part)
        probs[held_rows] = _probs(trainer, data.subset(held_rows))
    return probs


def _probs(trainer, data) -> np.ndarray:
    return torch.softmax(trainer.logits(data).double(), 1).cpu().numpy()


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
        self.context, self.folds, self.cv_loss, self.filter_by = context, check_folds(folds), cv_loss, filter_by
        self.final = context.trainer()
        self.cv_epochs = cv_epochs or self.final.epochs
        context.build_loss(cv_loss)  # an unknown cv_loss fails now, not after the first fold
        self.fold = 0
        self.fold_trainer = None
        self.probs: np.ndarray | None = None
        self.keep: np.ndarray | None = None
        self._parts: dict = {}
        self.history: list[dict] = []

    @property
    def model(self):
        return self.final.model

    @property
    def epochs(self) -> int:
        return self.folds * self.cv_epochs + self.final.epochs

    @property
    def epoch(self) -> int:
        done = self.folds * self.cv_epochs if self.keep is not None else self.fold * self.cv_epochs
        return done + (self.final.epoch if self.keep is not None else getattr(self.fold_trainer, "epoch", 0))

    def _part(self, data, name, rows):
        if name not in self._parts:  # one device copy per split, not one per epoch
            self._parts[name] = data.subset(rows)
        return self._parts[name]

    def train_epoch(self, data, rank: int = 0, world: int = 1) -> dict:
        if world > 1:
            raise ValueError("cleanlab-prune does not support distributed training; run it on one device")
        if self.keep is not None:
            stats = self.final.train_epoch(self._part(data, "kept", np.flatnonzero(self.keep)))
            self.history.append(stats)
            return stats
        labels = data.y.cpu().numpy()
        if self.probs is None:
            self.probs = np.zeros((len(labels), self.context.num_classes))
        fit_rows, held_rows = _folds(labels, self.folds, self.context.seed)[self.fold]
        if self.fold_trainer is None:
            self.fold_trainer = self.context.trainer(self.cv_loss, FOLD_SEED + self.fold, epochs=self.cv_epochs)
        stats = dict(self.fold_trainer.train_epoch(self._part(data, f"fit{self.fold}", fit_rows)), fold=self.fold)
        if self.fold_trainer.epoch == self.cv_epochs:
            self.probs[held_rows] = _probs(self.fold_trainer, self._part(data, f"held{self.fold}", held_rows))
            self.fold, self.fold_trainer, self._parts = self.fold + 1, None, {}
            if self.fold == self.folds:
                self._prune(labels)
        self.history.append(stats)
        return stats

    def _prune(self, labels: np.ndarray) -> None:
        from cleanlab.filter import find_label_issues

        # n_jobs=1: cleanlab's worker pool relies on fork-inherited globals and breaks in spawned workers
        issues = find_label_issues(labels, self.probs, filter_by=self.filter_by, n_jobs=1)
        self.keep = ~issues

    def _active(self):
        """The fold network while cross-fitting (so per-epoch curves mean something), then the final one."""
        return self.fold_trainer if self.keep is None and self.fold_trainer is not None else self.final

    def logits(self, data):
        return self._active().logits(data)

    def accuracy(self, data) -> float:
        return self._active().accuracy(data)

    def to(self, device):
        for trainer in (self.final, self.fold_trainer):
            if trainer is not None:
                trainer.to(device)
        self._parts = {}
        self.context = replace(self.context, device=torch.device(device))
        return self

    def info(self) -> dict:
        kept = None if self.keep is None else int(self.keep.sum())
        return {"kept": kept, "removed": None if kept is None else int(self.keep.size - kept)}

    def state_dict(self) -> dict:
        # tensors, not arrays, so that checkpoints load with torch.load(weights_only=True)
        as_tensor = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
        fold_state = self.fold_trainer.state_dict() if self.fold_trainer else None
        return {"final": self.final.state_dict(), "fold": self.fold, "probs": as_tensor(self.probs),
                "keep": as_tensor(self.keep), "history": self.history, "fold_trainer": fold_state}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.final.load_state_dict(state["final"])
        as_array = lambda t: None if t is None else t.cpu().numpy()  # noqa: E731
        self.fold, self.probs, self.keep = state["fold"], as_array(state["probs"]), as_array(state["keep"])
        self.history = list(state["history"])
        self.fold_trainer = None
        if state["fold_trainer"] is not None:
            self.fold_trainer = self.context.trainer(self.cv_loss, FOLD_SEED + self.fold, epochs=self.cv_epochs)
            self.fold_trainer.load_state_dict(state["fold_trainer"])
