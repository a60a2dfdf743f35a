"""Choosing JAL's ``a`` (with β and the weight decay) for the data at hand, and calibrating probabilities.

``a="auto"`` trains a grid of candidates (``registry.toml`` ``[selection.amse]``: values of ``a``, each
with a few settings of β and weight decay) as stacked runs (one stack, or several where that
measures faster: ``autostack.measured_stacks``) on a stratified 80 % of the given, noisy
labels, and keeps the candidate with the best accuracy on the held-out 20 % of those same noisy
labels. When the clean class dominates every row of the noise (the condition JAL's guarantee needs),
the classifier that best predicts the noisy labels is the one that best predicts the clean ones, so
noisy held-out accuracy ranks candidates correctly; a candidate whose training collapses (``a`` too
large) ranks last, one that diverges is dropped. The winning settings are then trained on all the
data, so the final network sees every label.

The held-out split also calibrates: one temperature ``τ`` for the logits, fitted by the likelihood
of the held-out labels agreeing with the predictions through the noise level estimated on the same
split (``fit_temperature``). Fitting ``τ`` to the noisy labels directly would calibrate the model
for predicting *noisy* labels (far too unsure of the clean class under heavy noise); through the
noise it is calibrated for the clean ones. The refit model keeps that temperature.
"""

from __future__ import annotations

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
    grid = load().get("selection", {}).get("amse", {})
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


def holdout_split(labels: np.ndarray, seed: int, fraction: float = HOLDOUT) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded ``(train rows, held-out rows)`` split: ``fraction`` of the rows, and at least
    one of every class seen twice or more. A class seen once is only trained on: held out, the
    candidates would never see it (small folds of ``CleanLearning`` hit this)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    alone = np.isin(labels, classes[counts == 1])
    rest = np.flatnonzero(~alone)
    held = max(round(fraction * len(labels)), int((counts > 1).sum()))
    if len(rest) - held < int((counts > 1).sum()):
        raise ValueError(
            f"a='auto' and calibrate=True hold out part of the labels, but {len(labels)} samples of "
            f"{len(classes)} classes ({int((counts == 1).sum())} seen once) leave too few to hold out. "
            "Give a number instead (loss_params={'a': 30}, calibrate=False) or more data"
        )
    split = StratifiedShuffleSplit(1, test_size=held, random_state=seed)
    train, held = next(split.split(np.zeros(len(rest)), labels[rest]))
    return np.sort(np.r_[np.flatnonzero(alone), rest[train]]), np.sort(rest[held])


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


class HeldOut:
    """A learner: candidates on 80 % of the labels, the best on the held-out 20 %, refit on all of them.

    ``candidates`` are variants of the run (``{"loss_params": ..., "config": ...}``); with the ``erm``
    method they train together as stacked runs, and one candidate (a fixed ``a``) only calibrates. Another
    ``method`` trains its single candidate with that method. ``epochs`` counts both phases; the
    state (the stack's runs, the split's scores, the refit) checkpoints like any learner's.
    """

    def __init__(self, context, candidates: list[dict], method: str = "erm", method_params: dict | None = None,
                 calibrate: bool = True):  # fmt: skip
        if method != "erm" and len(candidates) > 1:
            raise ValueError(f"a='auto' chooses a with method erm; method {method!r} needs a number (e.g. a=30)")
        self.context, self.candidates = context, candidates
        self.method, self.method_params, self.calibrate = method, dict(method_params or {}), calibrate
        self.phase = "select"
        self.stack = self._stack() if method == "erm" else None
        self.single = None if method == "erm" else self._learner(candidates[0])
        self.select_epochs = self.stack.epochs if self.stack is not None else self.single.epochs
        self.final = None
        self.scores: list[float | None] | None = None
        self.chosen: int | None = None
        self.temperature = 1.0
        self.noise = None
        self.history: list[dict] = []
        self._rows = None

    # -- building runs --------------------------------------------------------------------------
    def _context(self, candidate: dict):
        return self.context.vary(candidate["loss_params"], candidate["config"])

    def _stack(self):
        from jal_plugins.autostack import measured_stacks

        return measured_stacks([self._context(c).parts() for c in self.candidates], self.context.device,
                               self.context.input_shape)  # fmt: skip

    def _learner(self, candidate: dict):
        from jal_plugins import create_method

        return create_method(self.method, self._context(candidate), **self.method_params)

    # -- the learner interface ------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        return 2 * self.select_epochs

    @property
    def epoch(self) -> int:
        if self.phase == "select":
            return self.stack.epoch if self.stack is not None else self.single.epoch
        return self.select_epochs + (self.final.epoch if self.final is not None else 0)

    @property
    def model(self):
        return self._active_model()

    def _active_model(self):
        if self.final is not None:
            return self.final.model
        return self.stack.net.body if self.stack is not None else self.single.model

    def train_epoch(self, data, rank: int = 0, world: int = 1) -> dict:
        if world > 1:
            raise ValueError("a='auto' and calibration train on one device; run without torchrun")
        if self.phase == "select":
            stats = self._select_epoch(data)
            if self.epoch == self.select_epochs:
                self._choose(data)
        else:
            stats = self.final.train_epoch(data)
        self.history.append(stats)
        return stats

    def _split(self, data):
        if self._rows is None:
            self._rows = holdout_split(data.y.cpu().numpy(), self.context.seed)
        return self._rows

    def _select_epoch(self, data) -> dict:
        from jal_plugins.engine import Diverged

        train, _ = self._split(data)
        if self.single is not None:
            return dict(self.single.train_epoch(data.subset(train)), phase="select")
        rows = [torch.as_tensor(train, device=data.y.device)] * self.stack.runs
        weights = None if data.w is None else data.w.expand(self.stack.runs, -1)
        stats = self.stack.train_epoch(data, weights=weights, rows=rows)
        live = [s for s in stats if s is not None]
        if not live:  # the error of the one that diverged first names the epoch and the fix
            first = min((d for d in self.stack.diverged if d), key=lambda d: d.epoch)
            raise Diverged(first.epoch, first.reason if self.stack.runs == 1 else f"every candidate did ({first.reason})")
        best = min(live, key=lambda s: s["train_loss"])
        return {**best, "phase": "select", "candidates": len(live)}

    def _held_logits(self, data) -> torch.Tensor:
        _, held = self._split(data)
        part = data.subset(held)
        if self.single is not None:
            return self.single.logits(part).unsqueeze(0)
        return self.stack.logits(part)

    def _choose(self, data) -> None:
        _, held = self._split(data)
        labels = data.y[torch.as_tensor(held, device=data.y.device)]
        logits = self._held_logits(data)
        accuracy = (logits.argmax(2) == labels).float().mean(1).tolist()
        diverged = self.stack.diverged if self.stack is not None else [None]
        self.scores = [None if d else a for a, d in zip(accuracy, diverged)]
        for i, d in enumerate(diverged):
            if d:
                warnings.warn(f"a='auto' candidate {self.candidates[i]['loss_params']} diverged ({d}); dropped", stacklevel=2)
        self.chosen = max((i for i, s in enumerate(self.scores) if s is not None), key=lambda i: self.scores[i])
        winner = logits[self.chosen]
        if self.calibrate:
            self.temperature, self.noise = fit_temperature(winner, labels.cpu().numpy())
        self.phase = "refit"
        self.stack = self.single = None  # the candidates are done; the winner's settings train on all rows
        self.final = self._learner(self.candidates[self.chosen])

    def logits(self, data):
        if self.final is not None:
            return self.final.logits(data)
        return self.stack.logits(data)[0] if self.stack is not None else self.single.logits(data)

    def accuracy(self, data) -> float:
        return (self.logits(data).argmax(1) == data.y).float().mean().item()

    def to(self, device):
        from dataclasses import replace

        for part in (self.stack, self.single, self.final):
            if part is not None:
                part.to(device)
        self.context = replace(self.context, device=torch.device(device))
        return self

    def info(self) -> dict:
        chosen = None if self.chosen is None else self.candidates[self.chosen]
        return {
            "chosen": chosen, "held_out_accuracy": self.scores, "candidates": self.candidates,
            "temperature": self.temperature, "noise_rate": self.noise,
        }  # fmt: skip

    def state_dict(self) -> dict:
        state = {"phase": self.phase, "scores": self.scores, "chosen": self.chosen, "temperature": self.temperature,
                 "history": self.history, "noise": self.noise}  # fmt: skip
        if self.stack is not None:
            state["stack"] = [self.stack.run_state(r) for r in range(self.stack.runs)]
            state["stack_sizes"] = self.stack.sizes
        for name in ("single", "final"):
            if getattr(self, name) is not None:
                state[name] = getattr(self, name).state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.phase, self.scores, self.chosen = state["phase"], state["scores"], state["chosen"]
        self.temperature, self.history = state["temperature"], list(state["history"])
        self.noise = state.get("noise")
        if self.phase == "select":
            if self.stack is not None:
                self.stack.load_states(state["stack"], state.get("stack_sizes"))
            else:
                self.single.load_state_dict(state["single"])
        else:
            self.stack = self.single = None
            self.final = self._learner(self.candidates[self.chosen])
            self.final.load_state_dict(state["final"])
