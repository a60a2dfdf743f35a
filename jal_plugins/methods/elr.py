"""``elr`` (Liu et al., NeurIPS 2020): early-learning regularisation keeps the network near the targets
it predicted early in training, before it memorises the wrong labels."""

from __future__ import annotations

import torch

from jal_plugins import checks
from jal_plugins.methods.base import one_device

CLAMP = 1e-4  # predictions are clamped to [1e-4, 1 − 1e-4] first, as in the paper's code


def elr_regulariser(targets: torch.Tensor, idx: torch.Tensor, logits: torch.Tensor, beta: float) -> torch.Tensor:
    """Update rows ``idx`` of ``targets`` with the batch's predictions; each sample's ``log(1 − ⟨p, t⟩)``.

    The targets are a temporal ensemble, ``t ← β·t + (1 − β)·p̂`` with ``p̂`` the detached, clamped
    prediction renormalised to sum to 1; the gradient flows through the clamped prediction ``p`` only.
    """
    p = logits.softmax(1).clamp(CLAMP, 1 - CLAMP)
    q = p.detach()
    targets[idx] = beta * targets[idx] + (1 - beta) * q / q.sum(1, keepdim=True)
    return torch.log(1 - (targets[idx] * p).sum(1))


class ELR:
    """One network trained on the run's loss plus ``lam`` × the ELR regulariser ``log(1 − ⟨p, t⟩)``.

    ``t`` is a target kept per training row (the batch's row indices from ``Trainer.batches``) as a
    moving average of the network's predictions with momentum ``beta``. Minimising ``log(1 − ⟨p, t⟩)``
    pulls ``p`` towards what the network predicted early, when it still fitted the clean majority, and
    so resists the later memorisation of wrong labels. Paper values per dataset are presets in
    ``registry.toml``; the defaults are the paper's CIFAR-10 values. Cost: an ``erm`` run, plus an
    N × K target table on the device.
    """

    def __init__(self, context, beta: float = 0.7, lam: float = 3.0):
        self.check(context.build_config(context.loss), beta, lam)
        self.beta, self.lam, self.num_classes = beta, lam, context.num_classes
        self.net = context.trainer()
        self.targets: torch.Tensor | None = None  # (N, K), created on the first epoch

    @staticmethod
    def check(config, beta, lam) -> None:
        """Refuse values outside the method's domain, naming the parameter (no data needed)."""
        checks.probability("beta", beta, open_high=True)
        checks.non_negative("lam", lam)

    model = property(lambda self: self.net.model)
    history = property(lambda self: self.net.history)
    epoch = property(lambda self: self.net.epoch)
    epochs = property(lambda self: self.net.epochs)

    def train_epoch(self, data, rank: int = 0, world: int = 1) -> dict:
        one_device("elr", world)
        net = self.net
        if self.targets is None:
            self.targets = torch.zeros(len(data), self.num_classes, device=net.device)
        if len(self.targets) != len(data):
            raise ValueError(f"elr keeps one target per training row: it has {len(self.targets)}, "
                             f"the data {len(data)} rows")  # fmt: skip
        loss_sum = torch.zeros((), device=net.device)
        correct = torch.zeros((), device=net.device, dtype=torch.long)
        seen = 0
        for idx, xb, yb in net.batches(data):
            logits = net.forward(xb)
            losses = net.loss(logits, yb) + self.lam * elr_regulariser(self.targets, idx, logits, self.beta)
            net.update((losses * data.w[idx]).mean() if data.w is not None else losses.mean())
            loss_sum += losses.detach().sum()
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += yb.shape[0]
        return net.finish_epoch(loss_sum, correct, seen)

    def logits(self, data) -> torch.Tensor:
        return self.net.logits(data)

    def accuracy(self, data) -> float:
        return self.net.accuracy(data)

    def to(self, device):
        self.net.to(device)
        self.targets = None if self.targets is None else self.targets.to(device)
        return self

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "net": self.net.state_dict(), "targets": self.targets}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.targets = state["targets"]
