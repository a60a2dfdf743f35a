"""Choosing a loss's parameters (and its regularisation) for the data at hand, and calibrating probabilities.

A selection is an explicit step of a run, as scikit-learn's ``GridSearchCV`` wraps an estimator:
``parse`` turns the loss parameters a user marked ``auto`` (or ``--tune``, or the estimator's
``tune=True``) into a ``Selection`` (what is searched, over how many folds) once, when a job is
validated or an estimator fits; nothing else reads the marker. ``Selections`` trains the
selections of many runs together, as one ``engine.Runs``.

A search trains the loss's candidates (``registry.toml`` ``[search.spaces]``: the same number for
every loss; for JAL, values of ``a``, each with two settings of β and weight decay) as stacked runs
(one stack, or several where that measures faster: ``autostack.measured_stacks``) by 2-fold
cross-fitting (``[search] folds``): every candidate trains on each stratified half of the given,
noisy labels and predicts the other, and the candidate whose predictions best agree with all those
held-out noisy labels wins (``[search] criterion``; ``CRITERIA``), or, in a space that lists its
candidates from the least to the most regularised (``ties = "later"``), the last one within a
standard error of the best (``choose``). When the clean class dominates
every row of the noise (the condition JAL's guarantee needs), the classifier that best predicts the
noisy labels is the one that best predicts the clean ones, so noisy held-out accuracy ranks
candidates; a candidate whose training collapses (``a`` too large) ranks last, one that diverges is
dropped. The winning settings are then trained on all the data, so the final network sees every
label. Two folds rather than one 80/20 split: on digits (``benchmarks/refit_or_keep.py``) a fifth of
1,297 labels was too few to separate JAL's candidates (the winner 0.6–4 points below the best in
hindsight), every label held out once brings it to 0.2–1.2 points, for a fifth more training.

The held-out predictions also calibrate: one temperature ``τ`` for the logits, fitted by the likelihood
of the held-out labels agreeing with the predictions through the noise level estimated on the same
split (``fit_temperature``). Fitting ``τ`` to the noisy labels directly would calibrate the model
for predicting *noisy* labels (far too unsure of the clean class under heavy noise); through the
noise it is calibrated for the clean ones. The refit model keeps that temperature.
With ``folds = 1`` one stratified 80 % trains and the other 20 % scores and calibrates.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from jal_plugins.registry import load

SEARCH = "auto"  # the value that marks a loss parameter to be searched; ``auto=true``: all of them
REGULARISATION = ("weight_decay", "l1")
SPACE_KEYS = ("points", "variants", "ties")  # a space's keys that are not parameters


def search_settings() -> dict:
    """The catalogue's ``[search]`` table: folds, budget, variants and every built-in loss's space."""
    return load().get("search", {})


def folds() -> int:
    """How many ways the labels are split to score candidates (``registry.toml`` ``[search]``)."""
    return int(search_settings().get("folds", 1))


def space(loss: str) -> dict | None:
    """Loss ``loss``'s search space: the catalogue's, else its factory's ``space`` attribute (a plugin's);
    None when it declares none (it is then tuned over the regularisation only)."""
    from jal_plugins.plugins import host

    declared = search_settings().get("spaces", {}).get(loss)
    if declared is None:
        declared = getattr(host()["losses"].get(loss).factory, "space", None)
    if declared is None:
        return None
    declared = dict(declared)
    if declared.get("variants") == "regularisation":  # a loss without parameters: its regularisation only
        declared["variants"] = search_settings().get("regularisation", [{}])
    return declared


def _space_parameters(table: dict) -> set[str]:
    points = [k for p in table.get("points", []) for k in p]
    variants = [k for v in table.get("variants", []) for k in v if k not in REGULARISATION]
    return {k for k in table if k not in SPACE_KEYS} | set(points) | set(variants)


@dataclass(frozen=True)
class Selection:
    """What a run searches before it trains, as ``GridSearchCV`` wraps an estimator: ``loss``'s space
    (``space``; ``searched`` names its parameters, empty when only the regularisation is), each
    candidate scored on ``folds`` folds of the given, noisy labels. ``table`` is the space searched."""

    loss: str
    searched: tuple[str, ...]
    folds: int
    table: tuple  # the space as sorted (key, value) pairs, part of the run's identity

    def space(self) -> dict:
        return dict(self.table)

    def candidates(self, loss_params: dict, config: dict) -> list[dict]:
        """The grid: ``[{"loss_params": ..., "config": ...}]``; the run's fixed settings are kept."""
        table = self.space()
        grid = {k: v for k, v in table.items() if k not in SPACE_KEYS}
        points = table.get("points", [{}])
        variants = table.get("variants", search_settings().get("variants", [{}]))
        out = []
        for values in itertools.product(*grid.values()):
            for point in points:
                for variant in variants:
                    own = {k: v for k, v in variant.items() if k not in REGULARISATION}
                    params = {**point, **dict(zip(grid, values)), **own, **loss_params}
                    changes = {k: v for k, v in variant.items() if k in REGULARISATION and k not in config}
                    candidate = {"loss_params": {k: _number(v) for k, v in params.items()}, "config": changes}
                    if candidate not in out:
                        out.append(candidate)
        return out

    @property
    def ties(self) -> str:
        """How a tie on the held-out labels is broken (``TIES``): the space's ``ties``, else ``[search] ties``."""
        return self.space().get("ties", search_settings().get("ties", "best"))

    def marked(self, loss_params: dict) -> dict:
        """``loss_params`` as the user wrote them: every searched parameter ``auto``."""
        return {**loss_params, **{name: SEARCH for name in self.searched}}

    def settings(self) -> dict:
        """What a run's identity must include: another space or fold count is another run (and checkpoint)."""
        own = search_settings()
        return {"folds": self.folds, "space": self.space(), "criterion": own.get("criterion", "noisy-accuracy"),
                "ties": self.ties}

    def networks(self, loss_params: dict) -> int:
        """How many networks the search trains at once: one per candidate and fold."""
        return len(self.candidates(loss_params, {})) * self.folds

    def work(self, loss_params: dict) -> float:
        """About how many runs' worth of training the search and the refit are: each candidate on the
        training share of every fold, then the winner on all the rows."""
        from jal_plugins.folds import HOLDOUT

        share = 1 - 1 / self.folds if self.folds > 1 else 1 - HOLDOUT
        return 1 + self.networks(loss_params) * share


def _number(value):
    """Grid values as floats (``a=8.0``, as a user's ``a=8`` is taken), anything else as it is."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def parse(loss: str, loss_params: dict, method: str = "erm", preset: str | None = None, *, default: bool = False,
          num_classes: int = 2) -> tuple[dict, Selection | None]:  # fmt: skip
    """``(fixed loss parameters, Selection or None)`` of parameters where some may be ``auto``.

    ``auto=true`` (``nce+rce,auto``, ``--tune``) searches the loss's whole space; ``default`` does
    too unless a parameter of the space is given (the estimator's default). A parameter marked
    ``auto`` must be one the loss declares a domain for and its space varies; only ``erm`` searches.
    """
    from jal_plugins.domains import domains_of
    from jal_plugins.plugins import host

    entry = host()["losses"].get(loss)
    loss = entry.name
    params = dict(loss_params)
    everything = params.pop(SEARCH, False)
    if everything not in (True, False):
        raise ValueError(f"{loss}: auto={everything!r}; write auto (or auto=true) to search every parameter")
    marked = tuple(k for k, v in params.items() if v == SEARCH)
    fixed = {k: v for k, v in params.items() if k not in marked}
    table = space(loss)
    names = _space_parameters(table) if table is not None else set()
    if not (marked or everything or (default and method == "erm" and not names & set(fixed))):
        return fixed, None
    declared = domains_of(entry.factory)
    for name in marked:
        if name not in declared:
            raise ValueError(f"{name}=auto: {entry.name} declares no domain for {name!r}"
                             + (f" (its parameters: {', '.join(sorted(declared))})" if declared else " (it has no parameters to search)"))  # fmt: skip
        if name not in names:
            raise ValueError(f"{name}=auto: the search space of {entry.name} does not vary {name!r} ({_describe(table)})")
    if method != "erm":
        raise ValueError(f"{loss} with {', '.join(marked) or 'auto'}: a search trains its candidates with method erm; "
                         f"give {entry.name}'s parameters for method {method!r}")  # fmt: skip
    if table is None:
        warnings.warn(f"loss {entry.name!r} declares no search space: tuned over the regularisation only", stacklevel=2)
        table = {"variants": search_settings().get("regularisation", [{}]), "ties": "later"}
    if table.get("ties", search_settings().get("ties", "best")) not in TIES:
        raise ValueError(f"the search space of {entry.name}: unknown ties {table.get('ties')!r}; known: {', '.join(TIES)}")
    if not _candidates_of(table):
        raise ValueError(f"the search space of {entry.name} is empty: {_describe(table)}")
    searched = tuple(sorted(names - set(fixed))) if (everything or not marked) else marked
    return fixed, Selection(entry.name, searched, folds(), tuple(sorted(table.items())))


def _candidates_of(table: dict) -> bool:
    grid = [v for k, v in table.items() if k not in SPACE_KEYS]
    return all(grid) and table.get("points", [{}]) != [] and table.get("variants", [{}]) != []


def _describe(table: dict | None) -> str:
    return "none declared" if table is None else ", ".join(f"{k}={v}" for k, v in table.items())


TAU = (0.5, 4.0)  # a few hundred held-out labels do not justify a temperature outside this range


def label_keep_rate(probs: np.ndarray, labels: np.ndarray, rows: np.ndarray | None = None,
                    sure: float = 0.5) -> np.ndarray | float:  # fmt: skip
    """How often the ``labels`` agree with the surest fraction ``sure`` of the predictions ``probs``
    (by default the more confident half): those are nearly always right, so their disagreements are
    the noise. ``rows`` (B, N) of resampled row indices give B rates at once."""
    confidence, agree = probs.max(1), probs.argmax(1) == np.asarray(labels)
    if rows is None:
        return float(agree[confidence >= np.quantile(confidence, 1 - sure)].mean())
    confidence, agree = confidence[rows], agree[rows]
    confident = confidence >= np.quantile(confidence, 1 - sure, axis=1, keepdims=True)
    return (agree & confident).sum(1) / confident.sum(1)


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
    probs = torch.softmax(z, 1).numpy()
    agree = probs.argmax(1) == np.asarray(labels)
    keep = label_keep_rate(probs, labels)
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


def noisy_accuracy(logits: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
    """Per held-out row: 1 where the prediction agrees with its noisy label (its mean: the accuracy)."""
    return (logits.argmax(1) == given).double()


def corrected_accuracy(logits: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
    """Per held-out row: the probability that its predicted class is its true one given its noisy
    label, from cleanlab's estimate of P(true | given) on these predictions (its inverse noise
    matrix); the mean is the accuracy on the clean labels that the noisy ones imply."""
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities

    probs = torch.softmax(logits.double(), 1).cpu().numpy()
    labels = given.cpu().numpy()
    if len(np.unique(labels)) < probs.shape[1]:  # cleanlab needs every class among the labels
        return noisy_accuracy(logits, given)
    _, _, inverse, _ = estimate_py_and_noise_matrices_from_probabilities(labels, probs)
    return torch.as_tensor(inverse[probs.argmax(1), labels])


# how candidates can be ranked on their held-out predictions (``[search] criterion``): each gives a
# value per held-out row, the candidate's score is their mean. Measured on noisy digits
# (benchmarks/choose_params.py, 5 losses x 5 noises x 3 seeds) the noisy accuracy chose better: mean
# regret 2.25 points against 3.47 for the corrected one, whose noise-matrix estimate on ~650 labels a
# fold is itself noisy. The others are computed only when named in ``RECORDED`` (a benchmark).
CRITERIA = {"noisy-accuracy": noisy_accuracy, "corrected-accuracy": corrected_accuracy}
RECORDED: tuple[str, ...] = ()
# ``[search] ties``: "best" takes the top score; "later" takes, among the candidates whose score is
# within one standard error of the top one's (of their paired per-row difference: the held-out
# labels cannot tell them apart), the one listed last in the space, the most regularised.
TIES = ("best", "later")


def choose(values: list, ties: str = "best") -> int | None:
    """The candidate to keep from each one's per-row criterion values (None: diverged); None if every
    one diverged. See ``TIES``."""
    live = [c for c, v in enumerate(values) if v is not None]
    if not live:
        return None
    means = {c: float(values[c].mean()) for c in live}
    best = max(live, key=means.get)
    if ties == "best":
        return best
    n = len(values[best])

    def tied(c: int) -> bool:
        gap = values[best] - values[c]
        return means[best] - means[c] <= float(gap.std()) / math.sqrt(n)

    return max(c for c in live if tied(c))


def score(predicted: list, labels: torch.Tensor, criteria: tuple[str, ...]) -> tuple[dict, list, torch.Tensor]:
    """Each candidate's held-out ``(rows, logits)`` of every fold (``predicted``; None for one that
    diverged) scored against ``labels`` by each of ``criteria``: ``({criterion: per-row values of
    each candidate}, each candidate's held-out logits, the held-out labels)``."""
    values: dict[str, list] = {name: [] for name in CRITERIA if name in criteria}
    held_logits, given = [], None
    for folds_of in predicted:
        if folds_of is None:
            held_logits.append(None)
            for own in values.values():
                own.append(None)
            continue
        rows = np.concatenate([rows for rows, _ in folds_of])
        z = torch.cat([logits for _, logits in folds_of])
        given = labels[torch.as_tensor(rows, device=labels.device)]
        held_logits.append(z)
        for name, own in values.items():
            own.append(CRITERIA[name](z, given).cpu())
    return values, held_logits, given


class Selections:
    """The selections of J runs (each its own labels, seed and grid), trained together as ``engine.Runs``.

    Phase ``"select"``: the candidates of every run (``grids[j]``, variants of ``contexts[j]``), one
    per fold, train together as cross-fitted networks (``folds.OutOfFold``), each on its fold's
    training rows of its run's labels; at the end each run keeps its candidate with the best accuracy
    on its held-out rows (every fold's, predicted by that fold's network) and fits its temperature
    there. Phase ``"refit"``: the J winners train together on all their labels. A run whose
    candidates all diverged is reported in ``diverged``; the others go on. A ``method`` other than
    ``erm`` trains one run's one candidate (calibration only) with that method, on one 80/20 split.
    """

    def __init__(self, contexts: list, grids: list[list[dict]], method: str = "erm",
                 method_params: dict | None = None, calibrate: bool = True, k: int | None = None,
                 criterion: str | None = None, ties: list[str] | None = None):  # fmt: skip
        from jal_plugins.folds import OutOfFold

        if method != "erm" and (len(contexts) > 1 or len(grids[0]) > 1):
            raise ValueError(f"a search (auto) trains its candidates with method erm; method {method!r} needs fixed parameters (e.g. a=30)")
        self.contexts, self.grids = list(contexts), [list(g) for g in grids]
        self.method, self.method_params, self.calibrate = method, dict(method_params or {}), calibrate
        self.runs = len(self.contexts)
        self.k = (folds() if k is None else k) if method == "erm" else 1
        self.criterion = criterion or search_settings().get("criterion", "noisy-accuracy")
        if self.criterion not in CRITERIA:
            raise ValueError(f"unknown selection criterion {self.criterion!r}; known: {', '.join(CRITERIA)}")
        self.ties = list(ties) if ties is not None else [search_settings().get("ties", "best")] * self.runs
        for rule in self.ties:
            if rule not in TIES:
                raise ValueError(f"unknown ties {rule!r}; known: {', '.join(TIES)}")
        # what the cross-fitting trains: (run, candidate, fold); and run -> candidate -> its slots
        self.slots = [(j, c, f) for j, grid in enumerate(self.grids) for c in range(len(grid)) for f in range(self.k)]
        self.members = [[[i for i, s in enumerate(self.slots) if s[:2] == (j, c)] for c in range(len(grid))]
                        for j, grid in enumerate(self.grids)]  # fmt: skip
        self.phase = "select"
        self.trainer = OutOfFold(
            self._train([(j, self.grids[j][c]) for j, c, _ in self.slots]), self.k,
            [self.contexts[j].seed for j, _, _ in self.slots], [f for _, _, f in self.slots],
            who="a search (auto) and calibrate=True",
            remedy="Give a number instead (loss_params={'a': 30}, calibrate=False) or more data",
        )  # fmt: skip
        self.select_epochs = self.trainer.epochs
        self.final_runs: list[int] = []  # the runs the refit trains, in its order
        self.scores: list = [None] * self.runs
        self.chosen: list = [None] * self.runs
        self.choices: list = [None] * self.runs
        self.temperature = [1.0] * self.runs
        self.noise: list = [None] * self.runs
        self.histories: list[list[dict]] = [[] for _ in range(self.runs)]
        self.diverged: list = [None] * self.runs

    def _train(self, runs: list[tuple[int, dict]]):
        """``(run, candidate)`` pairs as one ``Runs``: stacks of the measured size, or a method's learner."""
        from jal_plugins import create_method
        from jal_plugins.autostack import measured_stacks
        from jal_plugins.methods.base import Learner

        contexts = [self.contexts[j].vary(c["loss_params"], c["config"]) for j, c in runs]
        if self.method != "erm":
            return Learner(create_method(self.method, contexts[0], **self.method_params))
        return measured_stacks([c.parts() for c in contexts], contexts[0].device, contexts[0].input_shape)

    # -- engine.Runs -------------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        return 2 * self.select_epochs

    @property
    def epoch(self) -> int:
        if self.trainer is None:  # every run diverged while its candidates trained
            return self.epochs
        return self.trainer.epoch + (self.select_epochs if self.phase == "refit" else 0)

    @property
    def module(self):
        return self.trainer.module

    def _owners(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor([j for j, _, _ in self.slots], device=labels.device)

    def train_epoch(self, data, labels=None, weights=None, rows=None) -> list:
        """One epoch of every run (``labels``/``weights``: ``(J, N)``, default ``data``'s); each run's
        statistics, None for a run that has diverged."""
        if rows is not None:
            raise ValueError("a selection trains on its folds' rows, then on all of them")
        labels = data.y.expand(self.runs, -1) if labels is None else labels
        if weights is None and data.w is not None:
            weights = data.w.expand(self.runs, -1)
        if self.phase == "select":
            owner = self._owners(labels)
            stats = self.trainer.train_epoch(data, labels[owner], None if weights is None else weights[owner])
            out = self._select_stats(stats)
            if self.trainer.epoch == self.select_epochs:
                self._choose(data, labels[owner], labels)
        else:
            live = self.final_runs
            stats = self.trainer.train_epoch(data, labels[live], None if weights is None else weights[live])
            out = [None] * self.runs
            for i, (j, s) in enumerate(zip(live, stats)):  # epochs counted over both phases
                out[j] = None if s is None else {**s, "epoch": self.epoch, "phase": "refit"}
                self.diverged[j] = self.diverged[j] or self.trainer.diverged[i]
        for history, run_stats in zip(self.histories, out):
            if run_stats is not None:
                history.append(run_stats)
        return out

    def _select_stats(self, stats: list) -> list:
        """Each run's statistics of a selection epoch: its best live candidate's (a run all of whose
        candidates diverged gets the first one's error, which names the epoch and the fix)."""
        from jal_plugins.engine import Diverged

        out = []
        for j, candidates in enumerate(self.members):
            mine = [i for slots in candidates for i in slots]
            live = [stats[i] for i in mine if stats[i] is not None]
            if not live and not self.diverged[j]:
                first = min((self.trainer.diverged[i] for i in mine), key=lambda d: d.epoch)
                reason = first.reason if len(mine) == 1 else f"every candidate did ({first.reason})"
                self.diverged[j] = Diverged(first.epoch, reason)
            best = min(live, key=lambda s: s["train_loss"]) if live else None
            out.append(None if best is None else {**best, "phase": "select", "candidates": len(live)})
        return out

    def _choose(self, data, slot_labels: torch.Tensor, labels: torch.Tensor) -> None:
        """Each run's best candidate on its held-out rows (of every fold), its temperature; then the
        refit of the winners."""
        held = self.trainer.held_out(data, slot_labels)
        winners = []
        for j in range(self.runs):
            if self.diverged[j]:
                continue
            errors = [next((self.trainer.diverged[i] for i in slots if self.trainer.diverged[i]), None)
                      for slots in self.members[j]]  # fmt: skip
            for candidate, error in zip(self.grids[j], errors):
                if error:
                    warnings.warn(f"search candidate {candidate['loss_params']} diverged ({error}); dropped",
                                  stacklevel=4)  # fmt: skip
            predicted = [None if error else [held[i] for i in slots] for slots, error in zip(self.members[j], errors)]
            values, held_logits, given = score(predicted, labels[j], (self.criterion, *RECORDED))
            self.scores[j] = {name: [None if v is None else float(v.mean()) for v in own] for name, own in values.items()}
            self.chosen[j] = choose(values[self.criterion], self.ties[j])
            # what every recorded criterion and rule would have kept (a benchmark compares them)
            self.choices[j] = {f"{name}/{rule}": choose(values[name], rule) for name in values for rule in TIES}
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
        from jal_plugins.engine import accuracies

        return accuracies(self.logits(data), data)

    def info(self, run: int) -> dict:
        chosen, scores = self.chosen[run], self.scores[run] or {}
        return {
            "chosen": None if chosen is None else self.grids[run][chosen], "criterion": self.criterion,
            "ties": self.ties[run], "choices": self.choices[run],
            "scores": scores.get(self.criterion),
            "held_out_accuracy": scores.get("noisy-accuracy"), "corrected_accuracy": scores.get("corrected-accuracy"),
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
                "chosen": self.chosen[run], "choices": self.choices[run],
                "temperature": self.temperature[run], "noise": self.noise[run],
                "diverged": None if error is None else {"epoch": error.epoch, "reason": error.reason},
            }  # fmt: skip
            if self.phase == "select":  # the candidates' own curves are not kept: the run's history is
                state["candidates"] = [{**own[i], "history": []} for slots in self.members[run] for i in slots]
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
            self.choices[j] = s.get("choices")
            self.temperature[j], self.noise[j] = s["temperature"], s["noise"]
            if s["diverged"]:
                self.diverged[j] = Diverged(s["diverged"]["epoch"], s["diverged"]["reason"])
        if given[0]["phase"] == "refit":
            self._refit([j for j, s in enumerate(states) if "final" in s])
        if self.trainer is None:
            return
        if self.phase == "select":  # regrouped as saved, a resume gives the same numbers
            if sum(len(s["candidates"]) for s in states) != len(self.slots):
                raise ValueError(f"the checkpoint holds {sum(len(s['candidates']) for s in states)} candidate runs, "
                                 f"this selection trains {len(self.slots)} ({self.k} folds): it was written by another version")  # fmt: skip
            self.trainer.load_states([c for s in states for c in s["candidates"]])
        else:
            saved = {tuple(states[j]["sizes"]) for j in self.final_runs}
            sizes = list(saved.pop()) if len(saved) == 1 else None
            self.trainer.load_states([states[j]["final"] for j in self.final_runs],
                                     sizes if sizes and sum(sizes) == len(self.final_runs) else None)  # fmt: skip

    def to(self, device):
        from dataclasses import replace

        if self.trainer is not None:
            self.trainer.to(device)
        self.contexts = [replace(c, device=torch.device(device)) for c in self.contexts]
        return self
