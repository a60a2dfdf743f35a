"""What a method receives: the engine pieces of one run, to build as many trainers as it needs.

A method factory ``factory(context, **params)`` returns a *learner* with the ``Trainer`` interface:
``epoch`` / ``epochs`` (done / total), ``history``, ``train_epoch(data, rank, world) -> dict``,
``logits(data)``, ``accuracy(data)``, ``state_dict()`` / ``load_state_dict()``; optionally ``info()``
(a dict recorded with the result).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from jal_plugins.engine import Trainer, TrainConfig, seeded_init


@dataclass
class MethodContext:
    """One run's recipe: the chosen loss, fresh seeded networks, and per-loss training configs."""

    loss: str
    num_classes: int
    device: object
    seed: int
    build_model: Callable[[], object]
    build_loss: Callable[[str], object]  # loss name -> loss module with reduction="none"
    build_config: Callable[[str], TrainConfig]  # loss name -> recipe with that loss's regularisation
    noise_rate: float | None = None  # the nominal rate when the noise is synthetic, else None
    ddp: bool = False

    def parts(self, loss: str | None = None, seed_offset: int = 0, **changes) -> tuple:
        """``(network, loss, config, seed)`` of a fresh run with ``loss`` (default: the run's) and config
        ``changes``: what a ``Trainer`` or one slot of a ``Stack`` is built from."""
        name = loss or self.loss
        seed = self.seed + seed_offset
        config = replace(self.build_config(name), **changes)
        return seeded_init(seed, self.build_model), self.build_loss(name), config, seed

    def trainer(self, loss: str | None = None, seed_offset: int = 0, **changes) -> Trainer:
        """A fresh network and optimiser for ``loss`` (default: the run's), with config ``changes``."""
        model, loss_module, config, seed = self.parts(loss, seed_offset, **changes)
        return Trainer(model, loss_module, config, self.device, seed=seed, ddp=self.ddp)
