"""``cleanlab-prune``: confident learning (Northcutt et al., JAIR 2021) removes likely label errors first."""

from __future__ import annotations

import numpy as np

from jal_plugins.checks import positive_int
from jal_plugins.folds import as_array, as_tensor, check_folds, fold_divergence, fold_networks
from jal_plugins.methods.base import one_device


class CleanlabPrune:
    """Cross-fit ``folds`` networks for out-of-sample probabilities, drop cleanlab's label issues, retrain.

    ``cv_loss`` trains the fold networks (default ``ce``: cleanlab wants calibrated probabilities and
    bounded losses give under-confident ones); ``cv_epochs`` their epochs (default: the recipe's);
    ``filter_by`` is cleanlab's ``find_label_issues`` method. The final network trains on the kept
    rows with the run's loss, so ``cleanlab-prune`` + ``jal-ce`` combines cleaning and a robust loss.
    Cost: ``folds`` fits on (folds − 1)/folds of the data (trained together, as stacks where that
    measures faster: ``folds.OutOfFold``), then one fit on the kept rows.
    """

    def __init__(self, context, folds: int = 4, cv_epochs: int | None = None, cv_loss: str = "ce",
                 filter_by: str = "prune_by_noise_rate"):  # fmt: skip
        self.check(None, folds, cv_epochs, cv_loss, filter_by)
        self.filter_by = filter_by
        context.loss_module(cv_loss)  # an unknown loss fails now, not after the folds
        self.cv = fold_networks(context, folds, cv_loss, cv_epochs)
        self.final = context.trainer()
        self.keep: np.ndarray | None = None
        self._kept = None  # the kept rows on the device, copied once
        self.history: list[dict] = []

    @staticmethod
    def check(config, folds, cv_epochs, cv_loss, filter_by) -> None:
        """Refuse values outside the method's domain, naming the parameter (no data needed)."""
        check_folds(folds)
        if cv_epochs is not None:
            positive_int("cv_epochs", cv_epochs)

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
        one_device("cleanlab-prune", world)
        if self.keep is None:
            folds = self.cv.train_epoch(data)
            fold_divergence(self.cv.runs)(self.cv, folds)
            stats = {**folds[0], **{k: float(np.mean([s[k] for s in folds])) for k in ("train_loss", "train_accuracy")},
                     "folds": self.cv.runs}  # fmt: skip
            if self.cv.epoch == self.cv.epochs:
                self._prune(data)
        else:
            if self._kept is None:
                self._kept = data.subset(np.flatnonzero(self.keep))
            stats = self.final.train_epoch(self._kept)
        self.history.append(stats)
        return stats

    def _prune(self, data) -> None:
        from cleanlab.filter import find_label_issues

        # n_jobs=1: cleanlab's worker pool relies on fork-inherited globals and breaks in spawned workers
        probs = self.cv.probabilities(data)
        self.keep = ~find_label_issues(data.y.cpu().numpy(), probs, filter_by=self.filter_by, n_jobs=1)

    def logits(self, data):
        """The first fold's network while cross-fitting (so per-epoch curves mean something), then the final one."""
        return self.cv.logits(data)[0] if self.keep is None else self.final.logits(data)

    def accuracy(self, data) -> float:
        return self.cv.accuracies(data)[0] if self.keep is None else self.final.accuracy(data)

    def to(self, device):
        self.final.to(device)
        self.cv.to(device)
        self._kept = None
        return self

    def info(self) -> dict:
        kept = None if self.keep is None else int(self.keep.sum())
        return {"kept": kept, "removed": None if kept is None else int(self.keep.size - kept)}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "final": self.final.state_dict(), "cv": self.cv.run_states(),
                "keep": as_tensor(self.keep), "history": self.history}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.final.load_state_dict(state["final"])
        self.cv.load_states(state["cv"])
        self.keep, self._kept, self.history = as_array(state["keep"]), None, list(state["history"])
