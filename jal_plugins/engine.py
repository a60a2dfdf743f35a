"""The training engine: the one loop behind ``jal-plugins run`` and ``JALClassifier``.

The data lives on the device (images as uint8); shuffling and augmentation are batched tensor ops
drawn from a generator seeded per (seed, epoch), so a resumed run sees the same stream; nothing in a
step synchronises with the host (statistics are read once per epoch).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn
from torch.nn import functional as F

from jal_plugins import checks

AUGMENTATIONS = ("none", "crop-flip", "crop-flip-rotate")
SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """One training recipe (losses-and-noise.md §5); every field can be overridden."""

    epochs: int = 60
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    l1: float = 0.0
    clip: float | None = 5.0
    schedule: str = "cosine"
    augment: str = "none"
    eval_batch_size: int = 256
    amp: bool = True  # bf16 autocast on CUDA (the loss itself stays fp32)
    deterministic: bool = False

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            checks.positive_int(name, getattr(self, name))
        for name in ("lr", "momentum", "weight_decay", "l1"):
            checks.non_negative(name, getattr(self, name))
        if self.clip is not None:
            checks.positive("clip", self.clip)
        checks.choice("augment", self.augment, AUGMENTATIONS)
        checks.choice("schedule", self.schedule, SCHEDULES)
        for name in ("amp", "deterministic"):
            checks.boolean(name, getattr(self, name))

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
        return cls(**values)

    def lr_at(self, epoch: int) -> float:
        """Cosine annealing stepped once per epoch: ``lr0·(1 + cos(π e / E)) / 2``."""
        if self.schedule == "constant":
            return self.lr
        return self.lr * (1 + math.cos(math.pi * epoch / self.epochs)) / 2


resolve_device = checks.device


# A run has diverged when its loss or weights stop being finite, or when its weights' L2 norm grows
# this many times over their initial norm (or over 1, if smaller): ordinary training stays within
# about 10x, while a step
# that blows up (lr far too large) multiplies it by millions long before anything becomes NaN.
DIVERGENCE_GROWTH = 1e4


class Diverged(ArithmeticError):
    """Training blew up in ``epoch`` (1-based): a non-finite loss, or weights that exploded."""

    def __init__(self, epoch: int, reason: str):
        self.epoch, self.reason = epoch, reason
        super().__init__(
            f"training diverged in epoch {epoch}: {reason}; "
            "use a smaller learning rate (lr), keep gradient clipping on, or a smaller AMSE a"
        )


def divergence(loss: float, norm: float, norm0: float) -> str | None:
    """Why an epoch with mean ``loss`` and weight norm ``norm`` (``norm0`` at the start) diverged, or None."""
    if not math.isfinite(loss):
        return f"the epoch's mean loss is {loss}"
    if not math.isfinite(norm):
        return "the weights are no longer finite"
    base = max(norm0, 1.0)  # a network initialised at (or near) zero has no scale of its own
    if norm > DIVERGENCE_GROWTH * base:
        return f"the weights' norm grew {norm / base:.3g}-fold"
    return None


class DeviceData:
    """Inputs and labels on the device; image inputs stay uint8 until a batch is taken.

    ``mean``/``std`` (per channel, in [0, 1] units) normalise uint8 images; float inputs are used as is.
    """

    def __init__(self, x, y, device, mean=None, std=None, sample_weight=None):
        x = torch.as_tensor(x)
        self.images = x.dtype == torch.uint8
        self.x = x.to(device)
        self.y = torch.as_tensor(y, dtype=torch.long).to(device)
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"{self.x.shape[0]} inputs but {self.y.shape[0]} labels")
        if not self.images:
            self.x = self.x.float()
        self.w = None
        if sample_weight is not None:
            w = torch.as_tensor(sample_weight, dtype=torch.float32).to(device)
            # Normalised once so a batch's loss is mean(w·ℓ): weights rescale steps, not the learning rate.
            self.w = w / w.mean()
        c = self.x.shape[1] if self.x.ndim == 4 else 1
        self.mean = torch.tensor(mean if mean is not None else [0.0] * c, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std if std is not None else [1.0] * c, device=device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return self.y.shape[0]

    def subset(self, index) -> "DeviceData":
        """The rows ``index`` (kept on the device; sample weights renormalised over the subset)."""
        index = torch.as_tensor(index, device=self.x.device)
        out = object.__new__(DeviceData)
        out.__dict__.update(self.__dict__, x=self.x[index], y=self.y[index])
        out.w = None if self.w is None else self.w[index] / self.w[index].mean()
        return out

    def prepare(self, xb: torch.Tensor) -> torch.Tensor:
        """uint8 images (0..255) or already-float pixel values -> normalised float."""
        if xb.ndim != 4:
            return xb.float()
        return (xb.float() / 255 - self.mean) / self.std


def augment(xb: torch.Tensor, mode: str, gen: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding 4, horizontal flip (and ±20° rotation) on raw pixel values."""
    if mode == "none" or xb.ndim != 4:
        return xb.float()
    b, c, h, w = xb.shape
    dev = xb.device
    padded = F.pad(xb.float(), (4, 4, 4, 4))
    oy = torch.randint(0, 9, (b, 1), device=dev, generator=gen)
    ox = torch.randint(0, 9, (b, 1), device=dev, generator=gen)
    out = _crop(padded, oy, ox, h, w)
    flip = torch.rand(b, device=dev, generator=gen) < 0.5
    out = torch.where(flip[:, None, None, None], out.flip(3), out)
    if mode == "crop-flip-rotate":
        angle = (torch.rand(b, device=dev, generator=gen) * 2 - 1) * math.radians(20)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                             torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)  # fmt: skip
        grid = F.affine_grid(theta, list(out.shape), align_corners=False)
        out = F.grid_sample(out, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out


def _crop(padded: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, c = padded.shape[:2]
    rows = (oy + torch.arange(h, device=padded.device)).view(b, 1, h, 1).expand(b, c, h, padded.shape[3])
    out = padded.gather(2, rows)
    cols = (ox + torch.arange(w, device=padded.device)).view(b, 1, 1, w).expand(b, c, h, w)
    return out.gather(3, cols)


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t


class Trainer:
    """SGD with momentum, per-epoch cosine LR, L1 folded into the gradients, clipping, sample weights.

    ``model`` and ``loss`` (built with ``reduction="none"``) are moved to ``device``. ``epoch`` counts
    finished epochs; ``state_dict()``/``load_state_dict()`` make a checkpoint.
    """

    def __init__(self, model: nn.Module, loss: nn.Module, config: TrainConfig, device, *, seed: int = 0, ddp=False):
        self.config = config
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.model = model.to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_module = self.model
        if ddp:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_module = DistributedDataParallel(self.model, device_ids=ids)
        self.loss = loss.to(self.device)
        if getattr(self.loss, "reduction", "none") != "none":
            raise ValueError("the engine needs a loss built with reduction='none'")
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        fused = {"foreach": True} if self.device.type == "cuda" else {}
        self.optimizer = torch.optim.SGD(
            self.params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, **fused
        )
        self.epoch = 0
        self.history: list[dict] = []
        self.norm0 = self.weight_norm()

    def weight_norm(self) -> float:
        """L2 norm of all trainable parameters (one host sync)."""
        with torch.no_grad():
            return torch.linalg.vector_norm(torch.stack([p.detach().float().norm() for p in self.params])).item()

    def _generator(self, epoch: int) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * 1_000_003 + epoch)
        return gen

    def _autocast(self):
        if self.device.type == "cuda" and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def epochs(self) -> int:
        """Epochs of the whole run (``train_epoch`` calls until done)."""
        return self.config.epochs

    def start_epoch(self) -> None:
        """Set this epoch's learning rate and training mode."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr_at(self.epoch)
        self.train_module.train()

    def batches(self, data: DeviceData, rank: int = 0, world: int = 1):
        """Start the epoch and yield its shuffled, augmented ``(index, inputs, labels)`` batches."""
        cfg = self.config
        self.start_epoch()
        gen = self._generator(self.epoch)
        order = torch.randperm(len(data), device=self.device, generator=gen)
        for start in range(0, len(data), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if world > 1:  # every rank takes its share of the same global batch
                idx = idx[rank::world]
            xb = data.prepare(augment(data.x[idx], cfg.augment, gen)) if data.images else data.x[idx]
            yield idx, xb, data.y[idx]

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        """Training-mode fp32 logits."""
        with self._autocast():
            return self.train_module(_channels_last(xb)).float()

    def update(self, loss: torch.Tensor) -> None:
        """One SGD step on ``loss`` with the L1 term and gradient clipping."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.l1:  # d(λ·Σ|θ|)/dθ = λ·sign(θ), added before clipping as in the reference loops
            live = [p for p in self.params if p.grad is not None]
            torch._foreach_add_([p.grad for p in live], torch._foreach_sign(live), alpha=cfg.l1)
        if cfg.clip:
            nn.utils.clip_grad_norm_(self.params, cfg.clip, foreach=self.device.type == "cuda" or None)
        self.optimizer.step()

    def finish_epoch(self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, **extra) -> dict:
        """Count the epoch and record its statistics (the one host sync of an epoch)."""
        self.epoch += 1
        seen = max(seen, 1)
        stats = {"epoch": self.epoch, "lr": self.config.lr_at(self.epoch - 1), "train_loss": loss_sum.item() / seen,
                 "train_accuracy": correct.item() / seen, **extra}  # fmt: skip
        reason = divergence(stats["train_loss"], self.weight_norm(), self.norm0)
        if reason:
            raise Diverged(self.epoch, reason)
        self.history.append(stats)
        return stats

    def train_epoch(self, data: DeviceData, rank: int = 0, world: int = 1) -> dict:
        """One pass over ``data``; returns the epoch's mean loss and accuracy on the given labels."""
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        for idx, xb, yb in self.batches(data, rank, world):
            logits = self.forward(xb)
            per_sample = self.loss(logits, yb)
            self.update((per_sample * data.w[idx]).mean() if data.w is not None else per_sample.mean())
            loss_sum += per_sample.detach().sum()
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += yb.shape[0]
        return self.finish_epoch(loss_sum, correct, seen)

    @torch.no_grad()
    def logits(self, data: DeviceData) -> torch.Tensor:
        """Eval-mode logits (fp32) for every input of ``data``, in order."""
        self.model.eval()
        out = []
        for start in range(0, len(data), self.config.eval_batch_size):
            xb = data.x[start : start + self.config.eval_batch_size]
            with self._autocast():
                out.append(self.model(_channels_last(data.prepare(xb))).float())
        return torch.cat(out) if out else torch.empty(0, device=self.device)

    def accuracy(self, data: DeviceData) -> float:
        return (self.logits(data).argmax(1) == data.y).float().mean().item()

    def to(self, device) -> "Trainer":
        """Move the network, the loss and the optimiser state (e.g. to the CPU for pickling)."""
        if self.train_module is not self.model:
            raise ValueError("a distributed (DDP) trainer cannot be moved")
        self.device = torch.device(device)
        self.model.to(self.device)
        self.loss.to(self.device)
        for state in self.optimizer.state.values():
            for key, value in state.items():
                if torch.is_tensor(value):
                    state[key] = value.to(self.device)
        return self

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "config": asdict(self.config),
            "seed": self.seed,
            "norm0": self.norm0,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.history = list(state["history"])
        self.norm0 = state.get("norm0", self.norm0)


def seeded_init(seed: int, build):
    """Call ``build()`` with the torch RNG seeded, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels (reproducible mode); costs speed on CUDA."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
