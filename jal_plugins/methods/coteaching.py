"""``co-teaching`` (Han et al., NeurIPS 2018): two networks teach each other with small-loss samples."""

from __future__ import annotations


import torch

from jal_plugins.checks import integer, probability
from jal_plugins.methods.base import TwoNetworks, one_device
from jal_plugins.folds import check_folds, estimate_noise_rate

class CoTeaching(TwoNetworks):
    """Two networks; each updates on the small-loss part of every batch as ranked by the *other*.

    ``forget_rate`` is the fraction of each batch dropped once ramped up (default: the nominal noise
    rate, or, for real noise, cleanlab's estimate from ``folds``-fold out-of-sample probabilities);
    it grows linearly from 0 over the first ``ramp_epochs`` epochs (10 in the paper). Predictions
    come from the first network. Cost: two networks trained side by side (2× an ``erm`` run), plus,
    when the rate is unknown, ``folds`` CE fits for the estimate (done once, before the first epoch).
    """

    def __init__(self, context, forget_rate: float | None = None, ramp_epochs: int = 10, folds: int = 3):
        self.check(None, forget_rate, ramp_epochs, folds)
        self.ramp_epochs = ramp_epochs
        self.folds = folds
        self.forget_rate = forget_rate if forget_rate is not None else context.noise_rate
        self._peers(context)

    @staticmethod
    def check(config, forget_rate, ramp_epochs, folds) -> None:
        """Refuse values outside the method's domain, naming the parameter (no data needed)."""
        if forget_rate is not None:
            probability("forget_rate", forget_rate, open_high=True)
        integer("ramp_epochs", ramp_epochs, low=0)
        check_folds(folds)

    @property
    def model(self):
        return self.nets[0].model

    @property
    def history(self) -> list[dict]:
        return self.nets[0].history

    @property
    def epoch(self) -> int:
        return self.nets[0].epoch

    @property
    def epochs(self) -> int:
        return self.nets[0].epochs

    def rate(self, epoch: int) -> float:
        """The fraction dropped in ``epoch`` (0-based)."""
        ramp = min(epoch / self.ramp_epochs, 1.0) if self.ramp_epochs else 1.0
        return self.forget_rate * ramp

    def train_epoch(self, data, rank: int = 0, world: int = 1) -> dict:
        one_device("co-teaching", world)
        if self.forget_rate is None:
            self.forget_rate = estimate_noise_rate(self.context, data, self.folds)
        first, second = self.nets
        second.start_epoch()
        rate = self.rate(self.epoch)
        loss_sum = [torch.zeros((), device=first.device) for _ in self.nets]
        correct = [torch.zeros((), device=first.device, dtype=torch.long) for _ in self.nets]
        seen = 0
        for idx, xb, yb in first.batches(data):
            logits = [net.forward(xb) for net in self.nets]
            losses = [net.loss(out, yb) for net, out in zip(self.nets, logits)]
            keep = yb.shape[0] - int(rate * yb.shape[0])
            # each network's small-loss picks train its peer
            picks = [loss.detach().topk(keep, largest=False).indices for loss in losses]
            for net, loss, pick in zip(self.nets, losses, reversed(picks)):
                chosen = loss[pick]
                net.update((chosen * data.w[idx][pick]).mean() if data.w is not None else chosen.mean())
            for i in range(2):
                loss_sum[i] += losses[i].detach().sum()
                correct[i] += (logits[i].detach().argmax(1) == yb).sum()
            seen += yb.shape[0]
        second.finish_epoch(loss_sum[1], correct[1], seen, forget_rate=rate)
        return first.finish_epoch(loss_sum[0], correct[0], seen, forget_rate=rate)

    def logits(self, data):
        return self.nets[0].logits(data)

    def accuracy(self, data) -> float:
        return self.nets[0].accuracy(data)

    def info(self) -> dict:
        return {"forget_rate": self.forget_rate}

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "nets": [net.state_dict() for net in self.nets], "forget_rate": self.forget_rate}

    def load_state_dict(self, state: dict) -> None:
        for net, net_state in zip(self.nets, state["nets"]):
            net.load_state_dict(net_state)
        self.forget_rate = state["forget_rate"]
