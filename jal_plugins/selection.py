"""Choosing JAL's ``a`` (with β and the weight decay) for the data at hand, and calibrating probabilities.

``a="auto"`` trains a grid of candidates (``registry.toml`` ``[selection.amse]``: values of ``a``, each
with a few settings of β and weight decay) as stacked runs (one stack, or several where that
measures faster: ``autostack.measured_stacks``) by 2-fold cross-fitting (``[selection] folds``):
every candidate trains on each stratified half of the given, noisy labels and predicts the other,
and the candidate whose predictions best agree with all those held-out noisy labels wins. When the
clean class dominates every row of the noise (the condition JAL's guarantee needs), the classifier
that best predicts the noisy labels is the one that best predicts the clean ones, so noisy
held-out accuracy ranks candidates correctly; a candidate whose training collapses (``a`` too
large) ranks last, one that diverges is dropped. The winning settings are then trained on all the
data, so the final network sees every label. Two folds rather than one 80/20 split: on digits
(``benchmarks/refit_or_keep.py``) a fifth of 1,297 labels was too few to separate the candidates
(the winner 0.6–4 points below the best in hindsight), every label held out once brings it to
0.2–1.2 points, for a fifth more training.

The held-out predictions also calibrate: one temperature ``τ`` for the logits, fitted by the likelihood
of the held-out labels agreeing with the predictions through the noise level estimated on the same
split (``fit_temperature``). Fitting ``τ`` to the noisy labels directly would calibrate the model
for predicting *noisy* labels (far too unsure of the clean class under heavy noise); through the
noise it is calibrated for the clean ones. The refit model keeps that temperature.
With ``folds = 1`` one stratified 80 % trains and the other 20 % scores and calibrates.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import torch

from jal_plugins.registry import load

HOLDOUT = 0.2
AUTO = "auto"


def wants_selection(loss_params: dict | None) -> bool:
    return (loss_params or {}).get("a") == AUTO


def has_amse(loss: str, num_classes: int, preset: str | None = None) -> bool:
    """Whether ``loss`` has an AMSE term, whose ``a`` a selection can choose."""
    from jal_plugins import create_loss
    from jal_plugins.losses.asymmetric import AsymmetricMSE

    return any(isinstance(m, AsymmetricMSE) for m in create_loss(loss, num_classes, preset=preset).modules())


def candidates(loss_params: dict, config: dict) -> list[dict]:
    """The ``a="auto"`` grid: ``[{"loss_params": ..., "config": ...}]``; explicit settings are kept."""
    grid = selection_settings().get("amse", {})
    fixed = {k: v for k, v in loss_params.items() if k != "a"}
    out = []
    for a in grid.get("a", [2, 4, 8, 16, 32, 64]):
        for variant in grid.get("variants", [{}]):
            params = {**{k: v for k, v in variant.items() if k in ("alpha", "beta")}, **fixed, "a": float(a)}
            changes = {k: v for k, v in variant.items() if k in ("weight_decay", "l1") and k not in config}
            candidate = {"loss_params": params, "config": changes}
            if candidate not in out:
                out.append(candidate)
    return out


def selection_settings() -> dict:
    """The catalogue's ``[selection]`` table: what a run's identity must include when it chooses ``a``."""
    return load().get("selection", {})


def folds() -> int:
    """How many ways the labels are split to score candidates (``registry.toml`` ``[selection]``)."""
    return int(selection_settings().get("folds", 1))


def networks(n_candidates: int) -> int:
    """How many networks a selection of ``n_candidates`` trains at once: one per candidate and fold."""
    return n_candidates * folds()


def work(n_candidates: int) -> float:
    """About how many runs' worth of training a selection of ``n_candidates`` is: each candidate on
    the training share of every fold, then the winner on all the rows."""
    k = folds()
    return 1 + networks(n_candidates) * (1 - 1 / k if k > 1 else 1 - HOLDOUT)


def holdout_splits(labels: np.ndarray, seed: int, k: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, seeded ``(train rows, held-out rows)`` pairs: one that holds out ``HOLDOUT`` of the
    rows (``k = 1``), or ``k``-fold cross-fitting (``k >= 2``: every row held out once). A class seen
    once is only trained on: held out, the candidates would never see it (small folds of
    ``CleanLearning`` hit this)."""
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    alone = np.isin(labels, classes[counts == 1])
    rest = np.flatnonzero(~alone)
    seen = int((counts > 1).sum())
    held = max(round((HOLDOUT if k == 1 else 1 / k) * len(labels)), seen)
    if len(rest) - held < seen:
        raise ValueError(
            f"a='auto' and calibrate=True hold out part of the labels, but {len(labels)} samples of "
            f"{len(classes)} classes ({int((counts == 1).sum())} seen once) leave too few to hold out. "
            "Give a number instead (loss_params={'a': 30}, calibrate=False) or more data"
        )
    if k == 1:
        split = StratifiedShuffleSplit(1, test_size=held, random_state=seed)
    else:
        split = StratifiedKFold(k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class seen fewer than k times is held out in fewer folds: fine
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        pairs = list(split.split(np.zeros(len(rest)), labels[rest]))
    return [(np.sort(np.r_[np.flatnonzero(alone), rest[train]]), np.sort(rest[test])) for train, test in pairs]


TAU = (0.5, 4.0)  # a few hundred held-out labels do not justify a temperature outside this range


def fit_temperature(logits: torch.Tensor, labels: np.ndarray) -> tuple[float, float]:
    """``(τ, noise rate)``: the temperature under which the top-label confidences best explain the
    noisy held-out ``labels``, and the noise rate estimated on the way.

    The label-keep rate ``k`` is how often the labels agree with the model's more confident half of
    its predictions: those are nearly always right, so their disagreements are the noise. A label
    then agrees with the prediction with probability ``conf·k + (1 − conf)·(1 − k)/(K − 1)``, and
    ``τ`` (within ``TAU``) maximises the likelihood of the observed agreements. Measured on digits
    (30 networks, 5 losses, 40 % and 60 % noise): mean clean-label ECE 0.126 → 0.084, worse in 1 of
    30; cleanlab's noise matrix in place of ``k`` understated the keep rate (0.41 for 0.62 with CE)
    and made 7 of 30 worse. Only the top label enters, as in the calibration error: the whole
    probability vector through the noise would reward one-hot predictions under symmetric noise.
    """
    from scipy.optimize import minimize_scalar

    z = logits.detach().double().cpu()
    confidence, pred = torch.softmax(z, 1).max(1)
    agree = (pred.numpy() == np.asarray(labels))
    confident = (confidence >= confidence.median()).numpy()
    keep = float(agree[confident].mean())
    k = z.shape[1]
    other = (1 - keep) / (k - 1)
    if keep <= 1 / k:  # labels no better than chance, even where the model is sure: nothing to fit
        return 1.0, 1 - keep

    def nll(log_tau: float) -> float:
        conf = torch.softmax(z / math.exp(log_tau), 1).max(1).values.numpy()
        p = np.clip(conf * keep + (1 - conf) * other, 1e-12, 1 - 1e-12)
        return -float(np.sum(np.where(agree, np.log(p), np.log1p(-p))))

    best = minimize_scalar(nll, bounds=(math.log(TAU[0]), math.log(TAU[1])), method="bounded")
    return float(math.exp(best.x)), 1 - keep


class _Alone:
    """One method learner behind the interface of a one-run ``Stacks``: what a selection trains when
    its method is not ``erm`` (one candidate, calibration only) or when it refits a single run."""

    runs = 1

    def __init__(self, learner):
        self.learner = learner
        self.diverged = [None]

    epoch = property(lambda self: self.learner.epoch)
    epochs = property(lambda self: self.learner.epochs)
    sizes = property(lambda self: [1])

    def train_epoch(self, data, labels=None, weights=None, rows=None) -> list:
        from jal_plugins.engine import Diverged

        if labels is not None:
            data = data.relabelled(labels[0])
        if rows is not None:
            data = data.subset(rows[0])
        try:
            return [self.learner.train_epoch(data)]
        except Diverged as exc:
            self.diverged[0] = exc
            return [None]

    def logits(self, data) -> torch.Tensor:
        return self.learner.logits(data).unsqueeze(0)

    def run_states(self) -> list[dict]:
        return [self.learner.state_dict()]

    def load_states(self, states: list, sizes=None) -> None:
        if states[0] is not None:
            self.learner.load_state_dict(states[0])

    def to(self, device):
        self.learner.to(device)
        return self


class Selections:
    """The ``a="auto"`` selections of J runs (each its own labels, seed and grid), trained as stacks.

    Phase ``"select"``: the candidates of every run (``grids[j]``, variants of ``contexts[j]``), one
    per fold, train together as stacked runs, each on its fold's training rows of its run's labels;
    at the end each run keeps its candidate with the best accuracy on its held-out rows (every
    fold's, predicted by that fold's network) and fits its temperature there. Phase
    ``"refit"``: the J winners train together on all their labels. A run whose candidates all
    diverged is reported in ``diverged``; the others go on. The interface is a ``Stack``'s, one
    entry per run: the runner trains many runs' selections as one unit, and ``HeldOut`` is the
    J = 1 case. A ``method`` other than ``erm`` trains one run's one candidate with that method.
    """

    def __init__(self, contexts: list, grids: list[list[dict]], method: str = "erm",
                 method_params: dict | None = None, calibrate: bool = True):  # fmt: skip
        if method != "erm" and (len(contexts) > 1 or len(grids[0]) > 1):
            raise ValueError(f"a='auto' chooses a with method erm; method {method!r} needs a number (e.g. a=30)")
        self.contexts, self.grids = list(contexts), [list(g) for g in grids]
        self.method, self.method_params, self.calibrate = method, dict(method_params or {}), calibrate
        self.runs = len(self.contexts)
        self.k = folds() if method == "erm" else 1
        # what the candidates' stacks train: (run, candidate, fold); and run -> candidate -> its slots
        self.slots = [(j, c, f) for j, grid in enumerate(self.grids) for c in range(len(grid)) for f in range(self.k)]
        self.members = [[[i for i, s in enumerate(self.slots) if s[:2] == (j, c)] for c in range(len(grid))]
                        for j, grid in enumerate(self.grids)]  # fmt: skip
        self.phase = "select"
        self.trainer = self._train([(j, self.grids[j][c]) for j, c, _ in self.slots])
        self.select_epochs = self.trainer.epochs
        self.final_runs: list[int] = []  # the runs the refit trains, in its order
        self.scores: list = [None] * self.runs
        self.chosen: list = [None] * self.runs
        self.temperature = [1.0] * self.runs
        self.noise: list = [None] * self.runs
        self.histories: list[list[dict]] = [[] for _ in range(self.runs)]
        self.diverged: list = [None] * self.runs
        self._rows = self._rows_of_candidates = None

    def _train(self, runs: list[tuple[int, dict]]):
        """``(run, candidate)`` pairs as one trainer: stacks of the measured size, or one learner alone."""
        from jal_plugins import create_method
        from jal_plugins.autostack import measured_stacks

        contexts = [self.contexts[j].vary(c["loss_params"], c["config"]) for j, c in runs]
        if self.method != "erm" or len(runs) == 1:
            return _Alone(create_method(self.method, contexts[0], **self.method_params))
        return measured_stacks([c.parts() for c in contexts], contexts[0].device, contexts[0].input_shape)

    # -- the interface of a stack ------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        return 2 * self.select_epochs

    @property
    def epoch(self) -> int:
        if self.trainer is None:  # every run diverged while its candidates trained
            return self.epochs
        return self.trainer.epoch + (self.select_epochs if self.phase == "refit" else 0)

    def _split(self, labels: torch.Tensor) -> list[list[tuple[np.ndarray, np.ndarray]]]:
        """Every run's ``(train rows, held-out rows)`` per fold."""
        if self._rows is None:
            given = labels.cpu().numpy()
            self._rows = [holdout_splits(given[j], c.seed, self.k) for j, c in enumerate(self.contexts)]
        return self._rows

    def train_epoch(self, data, labels=None, weights=None, rows=None) -> list:
        """One epoch of every run (``labels``/``weights``: ``(J, N)``, default ``data``'s); each run's
        statistics, None for a run that has diverged."""
        labels = data.y.expand(self.runs, -1) if labels is None else labels
        if weights is None and data.w is not None:
            weights = data.w.expand(self.runs, -1)
        if self.phase == "select":
            out = self._select_epoch(data, labels, weights)
            if self.trainer.epoch == self.select_epochs:
                self._choose(data, labels)
        else:
            live = self.final_runs
            stats = self.trainer.train_epoch(data, labels[live], None if weights is None else weights[live])
            out = [None] * self.runs
            for i, (j, s) in enumerate(zip(live, stats)):  # epochs counted over both phases
                out[j] = None if s is None else {**s, "epoch": self.epoch, "phase": "refit"}
                self.diverged[j] = self.diverged[j] or self.trainer.diverged[i]
        for history, stats in zip(self.histories, out):
            if stats is not None:
                history.append(stats)
        return out

    def _select_epoch(self, data, labels, weights) -> list:
        from jal_plugins.engine import Diverged

        if self._rows_of_candidates is None:  # each candidate trains on its fold's training rows
            split = self._split(labels)
            self._rows_of_candidates = [torch.as_tensor(split[j][f][0], device=labels.device) for j, _, f in self.slots]
        owner = torch.as_tensor([j for j, _, _ in self.slots], device=labels.device)
        stats = self.trainer.train_epoch(data, labels[owner], None if weights is None else weights[owner],
                                         self._rows_of_candidates)  # fmt: skip
        out = []
        for j, candidates in enumerate(self.members):
            mine = [i for slots in candidates for i in slots]
            live = [stats[i] for i in mine if stats[i] is not None]
            if not live and not self.diverged[j]:  # the error of the one that diverged first names the epoch and the fix
                first = min((self.trainer.diverged[i] for i in mine), key=lambda d: d.epoch)
                reason = first.reason if len(mine) == 1 else f"every candidate did ({first.reason})"
                self.diverged[j] = Diverged(first.epoch, reason)
            best = min(live, key=lambda s: s["train_loss"]) if live else None
            out.append(None if best is None else {**best, "phase": "select", "candidates": len(live)})
        return out

    def _choose(self, data, labels) -> None:
        """Each run's best candidate on its held-out rows (of every fold), its temperature; then the
        refit of the winners."""
        split = self._split(labels)
        held = np.unique(np.concatenate([rows for pairs in split for _, rows in pairs]))  # scored at once
        logits = self.trainer.logits(data.subset(held))
        winners = []
        for j, pairs in enumerate(split):
            if self.diverged[j]:
                continue
            at = [torch.as_tensor(np.searchsorted(held, rows), device=logits.device) for _, rows in pairs]
            given = labels[j, torch.as_tensor(np.concatenate([rows for _, rows in pairs]), device=labels.device)]
            scores, held_logits = [], []
            for candidate, slots in zip(self.grids[j], self.members[j]):
                error = next((self.trainer.diverged[i] for i in slots if self.trainer.diverged[i]), None)
                if error:
                    warnings.warn(f"a='auto' candidate {candidate['loss_params']} diverged ({error}); dropped",
                                  stacklevel=3)  # fmt: skip
                z = None if error else torch.cat([logits[i, rows] for i, rows in zip(slots, at)])
                held_logits.append(z)
                scores.append(None if error else (z.argmax(1) == given).float().mean().item())
            self.scores[j] = scores
            self.chosen[j] = max((c for c, s in enumerate(scores) if s is not None), key=lambda c: scores[c])
            if self.calibrate:
                self.temperature[j], self.noise[j] = fit_temperature(held_logits[self.chosen[j]], given.cpu().numpy())
            winners.append(j)
        self._refit(winners)

    def _refit(self, runs: list[int]) -> None:
        self.phase, self.final_runs = "refit", runs
        self.trainer = self._train([(j, self.grids[j][self.chosen[j]]) for j in runs]) if runs else None

    def logits(self, data) -> torch.Tensor:
        """The refit runs' eval-mode logits ``(J, N, K)`` (zeros for a run that diverged)."""
        if self.phase == "select":
            raise ValueError("no candidate is chosen before the selection's last epoch")
        own = self.trainer.logits(data) if self.final_runs else None
        out = torch.zeros(self.runs, len(data), self.contexts[0].num_classes, device=data.y.device)
        for i, j in enumerate(self.final_runs):
            out[j] = own[i]
        return out

    def accuracies(self, data) -> list:
        """Each run's accuracy on ``data``'s labels; None while the candidates train (nothing is chosen)."""
        if self.phase == "select":
            return [None] * self.runs
        return (self.logits(data).argmax(2) == data.y).float().mean(1).tolist()

    def info(self, run: int) -> dict:
        chosen = self.chosen[run]
        return {
            "chosen": None if chosen is None else self.grids[run][chosen], "held_out_accuracy": self.scores[run],
            "candidates": self.grids[run], "temperature": self.temperature[run], "noise_rate": self.noise[run],
        }  # fmt: skip

    # -- checkpoints -------------------------------------------------------------------------------
    def run_states(self) -> list[dict]:
        """Every run's checkpoint: its candidates (or its refit), scores, choice and temperature."""
        own = self.trainer.run_states() if self.trainer is not None else []
        out = []
        for run in range(self.runs):
            error = self.diverged[run]
            state = {
                "epoch": self.epoch, "phase": self.phase, "history": self.histories[run], "scores": self.scores[run],
                "chosen": self.chosen[run], "temperature": self.temperature[run], "noise": self.noise[run],
                "diverged": None if error is None else {"epoch": error.epoch, "reason": error.reason},
            }  # fmt: skip
            if self.phase == "select":  # the candidates' own curves are not kept: the run's history is
                state["candidates"] = [{**own[i], "history": []} for slots in self.members[run] for i in slots]
                state["sizes"] = self.trainer.sizes
            elif run in self.final_runs:
                state["final"] = own[self.final_runs.index(run)]
                state["sizes"] = self.trainer.sizes
            out.append(state)
        return out

    def load_states(self, states: list) -> None:
        """Resume every run from its checkpoint (None: not started); all must have reached the same epoch."""
        from jal_plugins.engine import Diverged

        given = [s for s in states if s is not None]
        if not given:
            return
        if len({(s["epoch"], s["phase"]) for s in given}) > 1 or len(given) < self.runs:
            raise ValueError("the runs of a selection must resume from one epoch")
        for j, s in enumerate(states):
            self.histories[j], self.scores[j], self.chosen[j] = list(s["history"]), s["scores"], s["chosen"]
            self.temperature[j], self.noise[j] = s["temperature"], s["noise"]
            if s["diverged"]:
                self.diverged[j] = Diverged(s["diverged"]["epoch"], s["diverged"]["reason"])
        if given[0]["phase"] == "refit":
            self._refit([j for j, s in enumerate(states) if "final" in s])
        if self.trainer is None:
            return
        saved = {json.dumps(s.get("sizes")) for s in given}
        sizes = json.loads(saved.pop()) if len(saved) == 1 else None
        if sizes is not None and sum(sizes) != self.trainer.runs:
            sizes = None  # saved in a unit of other runs: no grouping to keep
        if self.phase == "select":  # regrouped as saved, a resume gives the same numbers
            if sum(len(s["candidates"]) for s in states) != len(self.slots):
                raise ValueError(f"the checkpoint holds {sum(len(s['candidates']) for s in states)} candidate runs, "
                                 f"this selection trains {len(self.slots)} ({self.k} folds): it was written by another version")  # fmt: skip
            self.trainer.load_states([c for s in states for c in s["candidates"]], sizes)
        else:
            self.trainer.load_states([states[j]["final"] for j in self.final_runs], sizes)

    def to(self, device):
        from dataclasses import replace

        if self.trainer is not None:
            self.trainer.to(device)
        self.contexts = [replace(c, device=torch.device(device)) for c in self.contexts]
        return self


class HeldOut:
    """A learner: candidates cross-fitted on the labels, the best on the held-out predictions, refit on all.

    The one-run case of ``Selections``, seen with the learner interface of the methods. ``candidates``
    are variants of the run (``{"loss_params": ..., "config": ...}``); with the ``erm`` method they
    train together as stacked runs, and one candidate (a fixed ``a``) only calibrates. ``epochs``
    counts both phases; the state checkpoints like any learner's.
    """

    def __init__(self, context, candidates: list[dict], method: str = "erm", method_params: dict | None = None,
                 calibrate: bool = True):  # fmt: skip
        self.selections = Selections([context], [candidates], method, method_params, calibrate)
        self.candidates = self.selections.grids[0]

    select_epochs = property(lambda self: self.selections.select_epochs)
    epochs = property(lambda self: self.selections.epochs)
    epoch = property(lambda self: self.selections.epoch)
    phase = property(lambda self: self.selections.phase)
    chosen = property(lambda self: self.selections.chosen[0])
    history = property(lambda self: self.selections.histories[0])

    @property
    def final(self):
        """The refit learner, once the selection has chosen."""
        trainer = self.selections.trainer
        return trainer.learner if self.phase == "refit" and isinstance(trainer, _Alone) else None

    @property
    def model(self):
        trainer = self.selections.trainer
        return trainer.learner.model if isinstance(trainer, _Alone) else trainer.net.body

    def train_epoch(self, data, rank: int = 0, world: int = 1) -> dict:
        if world > 1:
            raise ValueError("a='auto' and calibration train on one device; run without torchrun")
        (stats,) = self.selections.train_epoch(data)
        if stats is None:
            raise self.selections.diverged[0]
        return stats

    def logits(self, data):
        return self.selections.logits(data)[0]

    def accuracy(self, data) -> float | None:
        return self.selections.accuracies(data)[0]

    def to(self, device):
        self.selections.to(device)
        return self

    def info(self) -> dict:
        return self.selections.info(0)

    def state_dict(self) -> dict:
        return self.selections.run_states()[0]

    def load_state_dict(self, state: dict) -> None:
        self.selections.load_states([state])
