"""``dividemix`` (Li, Socher, Hoi, ICLR 2020): two networks split the data for each other into a clean,
labelled part and a noisy, unlabelled part, and learn from both semi-supervised with MixMatch."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.nn import functional as F

from jal_plugins import checks
from jal_plugins.sampler import augment, draw_augmentation
from jal_plugins.losses.base import expected_loss
from jal_plugins.methods.base import TwoNetworks, one_device
from jal_plugins.folds import as_array, as_tensor

RAMP_EPOCHS = 16  # λ_u grows linearly over this many epochs after warm-up, as in the reference code
STREAM = 300_007  # tags DivideMix's own draws (views, permutations, Beta weights, GMM starts)


def clean_probability(losses: np.ndarray, seed: int) -> np.ndarray:
    """Each sample's posterior of the low-loss component of a two-component Gaussian mixture fitted to
    ``losses`` scaled to [0, 1] (the paper's GMM: 10 EM iterations, tolerance 1e-2, covariance floor 5e-4)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    losses = np.asarray(losses, dtype=np.float64)
    span = losses.max() - losses.min()
    x = ((losses - losses.min()) / span if span > 0 else np.zeros_like(losses)).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed)
    with warnings.catch_warnings():  # 10 iterations is the paper's choice: a rough fit each epoch is enough
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(x)
    return gmm.predict_proba(x)[:, gmm.means_.argmin()]


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """Rows of ``p`` raised to ``1/temperature`` and renormalised: more confident for a temperature below 1."""
    q = p ** (1 / temperature)
    return q / q.sum(1, keepdim=True)


def refine(labels: torch.Tensor, weight: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Label co-refinement: the one-hot ``labels`` where the clean probability ``weight`` is high, the
    network's own ``predicted`` distribution where it is low (``w·y + (1 − w)·p``)."""
    return weight * labels + (1 - weight) * predicted


def mix_weight(rng: np.random.Generator, alpha: float) -> float:
    """``λ ~ Beta(α, α)`` taken as ``max(λ, 1 − λ)``, so every mixed row stays closest to its own sample."""
    lam = rng.beta(alpha, alpha)
    return max(lam, 1 - lam)


def mixup(inputs: torch.Tensor, targets: torch.Tensor, weight: float, perm: torch.Tensor) -> tuple:
    """MixMatch's mixing: row ``i`` becomes ``weight·row_i + (1 − weight)·row_perm[i]``, inputs and
    targets alike."""
    return weight * inputs + (1 - weight) * inputs[perm], weight * targets + (1 - weight) * targets[perm]


@torch.no_grad()
def _predict(trainer, xb: torch.Tensor) -> torch.Tensor:
    """Eval-mode probabilities of prepared inputs: the network that is not training guesses as it tests."""
    trainer.model.eval()
    try:
        return trainer.forward(xb).softmax(1)
    finally:
        trainer.model.train()


class DivideMix(TwoNetworks):
    """Two networks; after warm-up, each epoch each one divides the data for the other (co-divide).

    Warm-up: ``warmup_epochs`` epochs of both networks on every label with the run's loss. Then every
    epoch begins with each network scoring every training sample with the run's loss (eval mode, no
    augmentation); a two-component Gaussian mixture on the scores scaled to [0, 1] gives each sample's
    clean probability ``w``, and ``w > p_threshold`` makes the labelled set of the *other* network, the
    rest its unlabelled set. Each network then passes over its labelled set; every batch takes as many
    unlabelled samples and two augmented views of each sample:

    - label co-refinement: ``w·onehot(y) + (1 − w)·p̄`` (``p̄`` its own prediction averaged over the
      views), sharpened with ``temperature``;
    - label co-guessing: both networks' predictions averaged over both views of an unlabelled sample
      (the other network in eval mode), sharpened;
    - MixMatch: all views mixed with a shuffled copy of themselves, inputs and targets, with weight
      ``max(λ, 1 − λ)``, ``λ ~ Beta(alpha, alpha)``. The loss is the run's loss against the mixed labelled
      targets (its expectation over each target distribution, ``losses.base.expected_loss``), plus
      ``lambda_u`` × the mean squared error of the mixed unlabelled predictions (ramped up linearly over
      16 epochs after warm-up, as in the reference code), plus KL(uniform ‖ mean prediction).

    Predictions average the two networks' logits. Every draw comes from generators seeded per (seed,
    epoch, network), so a resumed run repeats them. Cost: warm-up is two ``erm`` epochs per epoch; then
    each epoch is two eval passes over the training data and, per network, a pass over its labelled set
    with four times the batch (two views of labelled and unlabelled rows) forward and backward, plus
    forward passes for the targets. For a loss other than CE, the supervised term evaluates the loss
    against every class (K evaluations per sample). Paper values per dataset and noise level are
    presets in ``registry.toml``; the defaults here are the paper's CIFAR-10 values at 50 % noise.
    Unlike the reference code, warm-up uses the run's loss (not CE with a confidence penalty for
    asymmetric noise), the mixture fits the current epoch's losses only (the code averages the last
    five at 90 % noise), and the learning rate follows the run's recipe.
    """

    def __init__(self, context, p_threshold: float = 0.5, temperature: float = 0.5, alpha: float = 4.0,
                 lambda_u: float = 25.0, warmup_epochs: int = 10):  # fmt: skip
        self.check(context.build_config(context.loss), p_threshold, temperature, alpha, lambda_u, warmup_epochs)
        self.p_threshold, self.temperature, self.alpha = p_threshold, temperature, alpha
        self.lambda_u, self.warmup_epochs = lambda_u, warmup_epochs
        self._peers(context)
        self.probs: list[np.ndarray] | None = None  # each network's clean probabilities of the last split

    @staticmethod
    def check(config, p_threshold, temperature, alpha, lambda_u, warmup_epochs) -> None:
        """Refuse values outside the method's domain, naming the parameter (no data needed)."""
        checks.probability("p_threshold", p_threshold, open_low=True, open_high=True)
        checks.positive("temperature", temperature)
        checks.positive("alpha", alpha)
        checks.non_negative("lambda_u", lambda_u)
        checks.integer("warmup_epochs", warmup_epochs, low=0)
        if warmup_epochs >= config.epochs:
            raise ValueError(f"warmup_epochs must be < epochs={config.epochs} (DivideMix trains after its warm-up), "
                             f"got warmup_epochs={warmup_epochs}")  # fmt: skip

    model = property(lambda self: self.nets[0].model)
    history = property(lambda self: self.nets[0].history)
    epoch = property(lambda self: self.nets[0].epoch)
    epochs = property(lambda self: self.nets[0].epochs)

    def train_epoch(self, data, rank: int = 0, world: int = 1) -> dict:
        one_device("dividemix", world)
        if data.w is not None:
            raise ValueError("dividemix does not take sample weights: its mixed targets replace the labels")
        epoch = self.epoch
        if epoch < self.warmup_epochs:
            stats = self.nets[0].train_epoch(data)
            self.nets[1].train_epoch(data)
            return stats  # the first network's record: the runner adds the test accuracy to it
        self.probs = [clean_probability(self._losses(net, data), self._seed(epoch, i))
                      for i, net in enumerate(self.nets)]  # fmt: skip
        stats = self._train(0, data, epoch)
        self._train(1, data, epoch)
        return stats

    def _seed(self, epoch: int, *tags) -> int:
        return int(np.random.SeedSequence([STREAM, self.context.seed, epoch, *tags]).generate_state(1)[0])

    @staticmethod
    @torch.no_grad()
    def _losses(net, data) -> np.ndarray:
        return net.loss(net.logits(data), data.y).double().cpu().numpy()

    def _view(self, data, rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A freshly augmented view of ``data``'s ``rows``, prepared for the network."""
        xb = data.x[rows]
        if not data.images:
            return xb
        return data.prepare(augment(xb, draw_augmentation(self.nets[0].config.augment, len(rows), gen, xb.device)))

    def _train(self, which: int, data, epoch: int) -> dict:
        """One epoch of network ``which`` on the split made by the other network."""
        net, peer = self.nets[which], self.nets[1 - which]
        prob, device, k, t = self.probs[1 - which], net.device, self.context.num_classes, self.temperature
        rng = np.random.default_rng(self._seed(epoch, which, 1))
        gen = torch.Generator(device=device)
        gen.manual_seed(self._seed(epoch, which, 2))
        clean = prob > self.p_threshold
        rows = torch.as_tensor(np.flatnonzero(clean), device=device)
        noisy = torch.as_tensor(np.flatnonzero(~clean), device=device)
        noisy = noisy[torch.randperm(len(noisy), device=device, generator=gen)]
        weight = torch.as_tensor(prob[clean], dtype=torch.float32, device=device).unsqueeze(1)
        labelled = data.subset(rows)
        batches = max(-(-len(rows) // net.config.batch_size), 1)
        prior = torch.full((k,), 1 / k, device=device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = taken = 0
        for b, (idx, x1, y) in enumerate(net.batches(labelled)):
            n = len(idx)
            views = [x1, self._view(labelled, idx, gen)]
            if len(noisy):  # the unlabelled rows cycle, as many per batch as labelled ones
                u = noisy[torch.arange(taken, taken + n, device=device) % len(noisy)]
                views += [self._view(data, u, gen), self._view(data, u, gen)]
                taken += n
            inputs = torch.cat(views)
            with torch.no_grad():
                p = net.forward(inputs).softmax(1)
                mean_x = (p[:n] + p[n : 2 * n]) / 2
                target_x = sharpen(refine(F.one_hot(y, k).float(), weight[idx], mean_x), t)
                targets = [target_x, target_x]
                if len(views) == 4:
                    q = _predict(peer, inputs[2 * n :])
                    target_u = sharpen((p[2 * n : 3 * n] + p[3 * n :] + q[:n] + q[n:]) / 4, t)
                    targets += [target_u, target_u]
            perm = torch.randperm(len(inputs), device=device, generator=gen)
            mixed, mixed_targets = mixup(inputs, torch.cat(targets), mix_weight(rng, self.alpha), perm)
            logits = net.forward(mixed)
            loss = expected_loss(net.loss, logits[: 2 * n], mixed_targets[: 2 * n]).mean()
            if len(views) == 4:
                ramp = min(max((epoch + b / batches - self.warmup_epochs) / RAMP_EPOCHS, 0.0), 1.0)
                unsupervised = (logits[2 * n :].softmax(1) - mixed_targets[2 * n :]).square().mean()
                loss = loss + ramp * self.lambda_u * unsupervised
            # KL(uniform ‖ mean prediction): keeps the network from sending every sample to a few classes
            loss = loss + F.kl_div(logits.softmax(1).mean(0).log(), prior, reduction="sum")
            net.update(loss)
            loss_sum += loss.detach() * n
            correct += (mean_x.argmax(1) == y).sum()
            seen += n
        return net.finish_epoch(loss_sum, correct, seen, labelled=len(rows))

    def logits(self, data) -> torch.Tensor:
        """The two networks' logits, averaged."""
        return (self.nets[0].logits(data) + self.nets[1].logits(data)) / 2

    def accuracy(self, data) -> float:
        return (self.logits(data).argmax(1) == data.y).float().mean().item()

    def info(self) -> dict:
        """Rows each network trained on as labelled in the last epoch (None during warm-up)."""
        if self.probs is None:
            return {"labelled": None}
        return {"labelled": [int((p > self.p_threshold).sum()) for p in reversed(self.probs)]}

    def state_dict(self) -> dict:
        probs = None if self.probs is None else [as_tensor(p) for p in self.probs]
        return {"epoch": self.epoch, "nets": [net.state_dict() for net in self.nets], "probs": probs}

    def load_state_dict(self, state: dict) -> None:
        for net, net_state in zip(self.nets, state["nets"]):
            net.load_state_dict(net_state)
        self.probs = None if state["probs"] is None else [as_array(p) for p in state["probs"]]
