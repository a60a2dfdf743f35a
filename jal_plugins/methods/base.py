"""What a method receives: the engine pieces of one run, to build as many trainers as it needs.

A method factory ``factory(context, **params)`` returns a *learner* with the ``Trainer`` interface:
``model``, ``epoch`` / ``epochs`` (done / total), ``history``, ``train_epoch(data, rank, world) -> dict``,
``logits(data)``, ``accuracy(data)``, ``to(device)``, ``state_dict()`` / ``load_state_dict()``;
optionally ``info()`` (a dict recorded with the result). ``state_dict()`` holds ``epoch`` and only
tensors and plain values, so a checkpoint loads with ``torch.load(weights_only=True)``.

A learner trains its networks through ``Trainer``: ``for idx, xb, yb in trainer.batches(data)`` gives
each batch with its row indices in ``data`` (a method that keeps per-sample state, such as ELR's
targets, indexes it with ``idx``), ``trainer.forward(xb)`` the training-mode logits,
``trainer.update(loss)`` one step on a scalar, and ``trainer.finish_epoch(...)`` the epoch's record.

``Learner`` presents any learner as one run of the engine's ``Runs``, so the loop, the runner and
the estimator train a method exactly as they train a stack.

A factory may also have a ``check(config, **params)`` attribute (a static method of a class): it
checks the parameter *values*, given every parameter with the factory's defaults filled in and the
run's ``TrainConfig``, without data. ``job.validate`` calls it through ``check_values``, so a bad
value is refused before any data is loaded or any run trains; the factory calls it too.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from jal_plugins.engine import Diverged, Trainer, TrainConfig, seeded_init


@dataclass
class MethodContext:
    """One run's recipe: the chosen loss, fresh seeded networks, and per-loss training configs."""

    loss: str
    num_classes: int
    device: object
    seed: int
    build_model: Callable[[], object]
    build_loss: Callable[..., object]  # (loss name, **params) -> loss module with reduction="none"
    build_config: Callable[[str], TrainConfig]  # loss name -> recipe with that loss's regularisation
    noise_rate: float | None = None  # the nominal rate when the noise is synthetic, else None
    ddp: bool = False
    loss_params: dict = field(default_factory=dict)  # the run's own loss parameters (its loss only)
    config_changes: dict = field(default_factory=dict)  # changes to every config of the run
    input_shape: tuple | None = None  # of one example, as the network takes it

    def loss_module(self, name: str | None = None):
        """Loss ``name`` (default: the run's) per sample; the run's parameters apply to its own loss."""
        name = name or self.loss
        return self.build_loss(name, **(self.loss_params if name == self.loss else {}))

    def config(self, name: str | None = None, **changes) -> TrainConfig:
        """The recipe for loss ``name`` (default: the run's) with the run's and then ``changes``' settings."""
        return replace(self.build_config(name or self.loss), **{**self.config_changes, **changes})

    def vary(self, loss_params: dict | None = None, config: dict | None = None) -> "MethodContext":
        """The same run with other loss parameters or settings (a candidate of a selection, say)."""
        return replace(self, loss_params={**self.loss_params, **(loss_params or {})},
                       config_changes={**self.config_changes, **(config or {})})  # fmt: skip

    def parts(self, loss: str | None = None, seed_offset: int = 0, **changes) -> tuple:
        """``(network, loss, config, seed)`` of a fresh run with ``loss`` (default: the run's) and config
        ``changes``: what a ``Trainer`` or one slot of a ``Stack`` is built from."""
        name = loss or self.loss
        seed = self.seed + seed_offset
        return seeded_init(seed, self.build_model), self.loss_module(name), self.config(name, **changes), seed

    def trainer(self, loss: str | None = None, seed_offset: int = 0, **changes) -> Trainer:
        """A fresh network and optimiser for ``loss`` (default: the run's), with config ``changes``."""
        model, loss_module, config, seed = self.parts(loss, seed_offset, **changes)
        return Trainer(model, loss_module, config, self.device, seed=seed, ddp=self.ddp)


def check_values(factory, config, params: dict) -> None:
    """``factory.check(config, **params)`` with the factory's defaults for the parameters not given."""
    check = getattr(factory, "check", None)
    if check is None:
        return
    declared = list(inspect.signature(factory).parameters.values())[1:]  # after the context
    defaults = {p.name: p.default for p in declared if p.default is not p.empty}
    check(config, **{**defaults, **params})


def one_device(method: str, world: int) -> None:
    """Refuse distributed training for a method whose per-sample state or paired networks need every row."""
    if world > 1:
        raise ValueError(f"{method} does not support distributed training; run it on one device")


SECOND_NET_SEED = 100_003  # offset so the peer's initialisation differs from any other seed's first net


class TwoNetworks:
    """Learners of two peer networks (co-teaching, DivideMix): built from the run's recipe, moved together."""

    def _peers(self, context) -> None:
        self.context = context
        self.nets = [context.trainer(), context.trainer(seed_offset=SECOND_NET_SEED)]

    def to(self, device):
        for net in self.nets:
            net.to(device)
        self.context = replace(self.context, device=torch.device(device))
        return self


class Learner:
    """A method's learner as ``engine.Runs`` with R = 1 (``rank``/``world``: its torchrun share).

    ``labels`` and ``rows`` of ``train_epoch`` relabel and subset the data for the learner; sample
    weights are the data's own (``DeviceData.w``), so ``weights`` is not passed on. A learner that
    raises ``Diverged`` is reported in ``diverged``, as a stack's run is.
    """

    runs = 1
    sizes = [1]  # as ``autostack.Stacks``: one "stack" of one run

    def __init__(self, learner, rank: int = 0, world: int = 1):
        self.learner, self.rank, self.world = learner, rank, world
        self.diverged: list[Diverged | None] = [None]

    epoch = property(lambda self: self.learner.epoch)
    epochs = property(lambda self: self.learner.epochs)
    histories = property(lambda self: [self.learner.history])
    module = property(lambda self: self.learner.model)

    def train_epoch(self, data, labels=None, weights=None, rows=None) -> list[dict | None]:
        if labels is not None:
            data = data.relabelled(labels[0])
        if rows is not None:
            data = data.subset(rows[0])
        try:
            return [self.learner.train_epoch(data, self.rank, self.world)]
        except Diverged as exc:
            self.diverged[0] = exc
            return [None]

    def logits(self, data) -> torch.Tensor:
        return self.learner.logits(data).unsqueeze(0)

    def accuracies(self, data) -> list[float]:
        return [self.learner.accuracy(data)]

    def info(self, run: int) -> dict:
        info = getattr(self.learner, "info", None)  # optional in the learner interface (module docstring)
        return info() if info is not None else {}

    def run_states(self) -> list[dict]:
        return [self.learner.state_dict()]

    def load_states(self, states: list[dict | None], sizes=None) -> None:
        if states[0] is not None:
            self.learner.load_state_dict(states[0])

    def to(self, device) -> "Learner":
        self.learner.to(device)
        return self
