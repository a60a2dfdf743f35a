"""The training engine: R runs of one network in one forward/backward pass; a single run is R = 1.

``Runs`` is the one interface of R runs that train together: a ``Stack`` (this module), stacks of a
measured size (``autostack.Stacks``), the networks of a cross-fitting (``folds.OutOfFold``), the
selections of a search (``selection.Selections``) and any method's learner (``methods.base.Learner``).
``loop.train`` trains any of them, epoch by epoch.

The data lives on the device (images stay uint8 until a batch is taken); each run's order and
augmentation come from ``sampler.EpochSampler``, its steps from ``sgd.SGD``. Nothing in a step
synchronises with the host: statistics are read once per epoch.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from jal_plugins import checks
from jal_plugins.losses.rows import loss_groups
from jal_plugins.sampler import AUGMENTATIONS, EpochSampler
from jal_plugins.sgd import SGD
from jal_plugins.sparse import SparseRows
from jal_plugins.stack import StackedNet, run_slice

SCHEDULES = ("cosine", "constant")
# The settings every run of a stack shares: they shape its batches and its arithmetic.
SHARED = ("epochs", "batch_size", "augment", "eval_batch_size", "amp", "deterministic")


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
# about 10x, while a step that blows up (lr far too large) multiplies it by millions long before
# anything becomes NaN.
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

    ``mean``/``std`` (per channel, in [0, 1] units) normalise uint8 images; float inputs are used as is;
    ``sparse.SparseRows`` stay sparse on the host, a batch densified at a time.
    """

    def __init__(self, x, y, device, mean=None, std=None, sample_weight=None):
        sparse = isinstance(x, SparseRows)
        x = x if sparse else torch.as_tensor(x)
        self.images = not sparse and x.dtype == torch.uint8
        self.x = x.to(device)
        self.y = torch.as_tensor(y, dtype=torch.long).to(device)
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"{self.x.shape[0]} inputs but {self.y.shape[0]} labels")
        if not (self.images or sparse):
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
        x = self.x.rows(index) if isinstance(self.x, SparseRows) else self.x[index]
        out.__dict__.update(self.__dict__, x=x, y=self.y[index])
        out.w = None if self.w is None else self.w[index] / self.w[index].mean()
        return out

    def relabelled(self, y: torch.Tensor) -> "DeviceData":
        """The same inputs with labels ``y``."""
        out = object.__new__(DeviceData)
        out.__dict__.update(self.__dict__, y=y)
        return out

    def prepare(self, xb: torch.Tensor) -> torch.Tensor:
        """uint8 images (0..255) or already-float pixel values -> normalised float."""
        if xb.ndim != 4:
            return xb.float()
        return (xb.float() / 255 - self.mean) / self.std



@runtime_checkable
class Runs(Protocol):
    """R runs that train together, one entry per run wherever a list is returned.

    ``train_epoch`` trains every live run one epoch (``labels``/``weights``: ``(R, N)``, default
    ``data``'s; ``rows``: each run's training rows) and returns each run's statistics, None for a
    run that has diverged (its ``Diverged`` is in ``diverged``). ``logits`` gives eval-mode
    ``(R, N, K)``. ``run_states``/``load_states`` checkpoint and resume every run (a state holds
    only tensors and plain values; None: not started). ``info(run)`` is what the record keeps of a
    run beside its curve (a selection's choice, a method's estimates). ``module`` is the network
    being trained, as one torch module.
    """

    runs: int
    epoch: int
    epochs: int
    histories: list[list[dict]]
    diverged: list[Diverged | None]
    module: nn.Module

    def train_epoch(self, data: DeviceData, labels=None, weights=None, rows=None) -> list[dict | None]: ...

    def logits(self, data: DeviceData) -> torch.Tensor: ...

    def run_states(self) -> list[dict]: ...

    def load_states(self, states: list[dict | None]) -> None: ...

    def info(self, run: int) -> dict: ...

    def to(self, device) -> Runs: ...


class Stack:
    """R independent runs of one network architecture, trained in one forward/backward pass.

    Run r has its own initial weights (``models[r]``, built from its seed), data order and
    augmentation stream (``seeds[r]``), training labels, sample weights and rows (``train_epoch``),
    per-sample loss (``losses[r]``, any registered loss), and config: learning rate and schedule,
    momentum, weight decay, L1 and clipping by its own gradient norm; BatchNorm normalises each run
    over its own batch. The stacked loss is the *sum* of the runs' mean losses, so every run takes
    the step it would take alone. A run that diverges is frozen (zero weights, no steps) and
    reported in ``diverged``; the others go on unaffected. ``input_shape`` lets the network be
    checked for stacking on an example input.
    """

    def __init__(self, models, losses, configs, seeds, device, *, ddp: bool = False, input_shape=None):
        self.runs = len(models)
        if not self.runs or not len(losses) == len(configs) == len(seeds) == self.runs:
            raise ValueError("a stack needs one model, loss, config and seed per run")
        for name in SHARED:
            values = {getattr(c, name) for c in configs}
            if len(values) > 1:
                raise ValueError(f"the runs of a stack must share {name}; got {sorted(values, key=str)}")
        if ddp and self.runs > 1:
            raise ValueError("a stack of runs cannot be trained with DDP: run one run per torchrun")
        self.configs, self.config = list(configs), configs[0]
        self.seeds = [int(s) for s in seeds]
        self.device = checks.device(device)
        example = None
        if input_shape is not None and self.runs > 1:
            example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0)).to(self.device)
        self.net = StackedNet([m.to(self.device) for m in models], example)
        # images in the layout convolutions run fastest in, on a CPU too (BENCHMARKS: the Fashion audit)
        self.net.to(memory_format=torch.channels_last)
        self.net.channels_last = True
        self.losses = [loss.to(self.device) for loss in losses]
        if any(getattr(loss, "reduction", "none") != "none" for loss in self.losses):
            raise ValueError("the engine needs losses built with reduction='none'")
        self.train_module = self.net
        if ddp:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_module = DistributedDataParallel(self.net, device_ids=ids)
        self.sampler = EpochSampler(self.seeds, self.config.batch_size, self.config.augment)
        self.sgd = SGD(self.configs, self._params())
        self.epoch = 0
        self.histories: list[list[dict]] = [[] for _ in range(self.runs)]
        self.diverged: list[Diverged | None] = [None] * self.runs
        self.norm0 = self.sgd.norms().tolist()

    def _params(self) -> list[nn.Parameter]:
        return [p for _, p in self._named()]

    def _named(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.net.body.named_parameters() if p.requires_grad]

    @functools.cached_property
    def _groups(self):
        """The runs' losses grouped into as few calls as they allow (``losses.rows``)."""
        return loss_groups(self.losses, self.device)

    def _autocast(self):
        if self.device.type == "cuda" and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def epochs(self) -> int:
        """Epochs of every run (``train_epoch`` calls until done)."""
        return self.config.epochs

    @property
    def module(self) -> nn.Module:
        return self.net.body

    def info(self, run: int) -> dict:
        return {}

    # -- one epoch --------------------------------------------------------------------------------
    def start_epoch(self) -> None:
        """Set this epoch's learning rates and training mode."""
        self.sgd.set_epoch(self.epoch)
        self.train_module.train()

    def batches(self, data: DeviceData, labels=None, weights=None, rows=None, rank: int = 0, world: int = 1):
        """Start the epoch; yield ``(index, inputs, labels, weights)`` batches, each with a leading run
        axis (``sampler.EpochSampler.batches``)."""
        self.start_epoch()
        yield from self.sampler.batches(self.epoch, data, labels, weights, rows, rank, world)

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        """Training-mode fp32 logits ``(R, B, K)`` of inputs ``(R, B, ...)``."""
        with self._autocast():
            return self.train_module(xb).float()

    def per_sample(self, logits: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """``(R, B)`` per-sample losses, each run scored by its own loss."""
        runs, b, k = logits.shape
        parts = [loss(logits[index].reshape(-1, k), yb[index].reshape(-1)).view(-1, b) for index, loss in self._groups]
        if isinstance(self._groups[0][0], slice):
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        out = logits.new_empty(runs, b)
        for (index, _), part in zip(self._groups, parts):
            out[index] = part
        return out

    def step(self, run_losses: torch.Tensor) -> None:
        """One SGD step of every run on its ``(R,)`` loss."""
        self.sgd.step(run_losses, ddp=self.train_module is not self.net)

    def train_epoch(self, data: DeviceData, labels=None, weights=None, rows=None, rank: int = 0, world: int = 1):
        """One pass over ``data``; per run, the epoch's statistics (None for a run that has diverged)."""
        loss_sum = torch.zeros(self.runs, device=self.device)
        correct = torch.zeros(self.runs, device=self.device, dtype=torch.long)
        seen = 0
        for _, xb, yb, wb in self.batches(data, labels, weights, rows, rank, world):
            logits = self.forward(xb)
            losses = self.per_sample(logits, yb)
            self.step((losses * wb).mean(1) if wb is not None else losses.mean(1))
            loss_sum += losses.detach().sum(1)
            correct += (logits.detach().argmax(2) == yb).sum(1)
            seen += yb.shape[1]
        return self.finish_epoch(loss_sum, correct, seen)

    def finish_epoch(self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, **extra) -> list[dict | None]:
        """Count the epoch, record each live run's statistics and freeze runs that diverged (one host sync)."""
        self.epoch += 1
        seen = max(seen, 1)
        losses = (loss_sum.float() / seen).tolist()
        accs = (correct.float() / seen).tolist()
        norms = self.sgd.norms().tolist()
        out = []
        for r in range(self.runs):
            reason = None if self.diverged[r] else divergence(losses[r], norms[r], self.norm0[r])
            if reason:
                self._freeze(r, Diverged(self.epoch, reason))
            if self.diverged[r]:
                out.append(None)
                continue
            stats = {"epoch": self.epoch, "lr": self.configs[r].lr_at(self.epoch - 1), "train_loss": losses[r],
                     "train_accuracy": accs[r], **extra}  # fmt: skip
            self.histories[r].append(stats)
            out.append(stats)
        return out

    @torch.no_grad()
    def _freeze(self, run: int, error: Diverged) -> None:
        """Stop run ``run``: finite zero weights, no momentum, no learning rate, no loss."""
        self.diverged[run] = error
        flat, names = self.sgd.flat, [n for n, _ in self._named()]
        for buffer in (flat.data, flat.momentum):
            for view, name in zip(flat.views(buffer), names):
                run_slice(view, self.net.shapes[name], self.runs, run).zero_()
        for name, buf in self.net.body.named_buffers():
            if buf.is_floating_point() and name in self.net.shapes:
                run_slice(buf, self.net.shapes[name], self.runs, run).fill_(1.0 if "var" in name else 0.0)
        self.sgd.freeze(run)

    # -- evaluation -------------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, data: DeviceData) -> torch.Tensor:
        """Eval-mode fp32 logits ``(R, N, K)`` of every input of ``data``, in order."""
        self.net.eval()
        size, out = self.config.eval_batch_size, []
        for start in range(0, len(data), size):
            xb = data.prepare(data.x[start : start + size])
            rows = len(xb)
            if rows < size:  # every batch the same size: a row's logits never depend on its batch-mates
                xb = torch.cat([xb, xb.new_zeros(size - rows, *xb.shape[1:])])
            with self._autocast():
                out.append(self.net(xb.unsqueeze(0).expand(self.runs, *xb.shape)).float()[:, :rows])
        return torch.cat(out, 1) if out else torch.empty(self.runs, 0, device=self.device)

    def accuracies(self, data: DeviceData) -> list[float]:
        """Each run's accuracy on ``data``'s labels (one host sync)."""
        return accuracies(self.logits(data), data)

    # -- checkpoints ------------------------------------------------------------------------------
    def run_state(self, run: int) -> dict:
        """Run ``run``'s checkpoint, in the same format whatever stack it was trained in."""
        return self.run_states([run])[0]

    def run_states(self, runs: list[int] | None = None) -> list[dict]:
        """``run_state`` of each of ``runs`` (default: all), reading the stack's tensors once."""
        runs = range(self.runs) if runs is None else runs
        body = self.net.body.state_dict()
        names = [n for n, _ in self._named()]
        momentum = dict(zip(names, self.sgd.flat.views(self.sgd.flat.momentum)))
        out = []
        for run in runs:
            error = self.diverged[run]
            out.append({
                "model": self.net.run_state_dict(run, body),
                "momentum": {k: run_slice(v, self.net.shapes[k], self.runs, run).clone() for k, v in momentum.items()},
                "epoch": self.epoch, "history": self.histories[run], "config": asdict(self.configs[run]),
                "seed": self.seeds[run], "norm0": self.norm0[run],
                "diverged": None if error is None else {"epoch": error.epoch, "reason": error.reason},
            })  # fmt: skip
        return out

    def load_states(self, states: list[dict | None]) -> None:
        """Resume every run from its checkpoint (None: not started); all must have reached the same epoch."""
        epochs = {0 if s is None else s["epoch"] for s in states}
        if len(epochs) > 1:
            raise ValueError(f"the runs of a stack must resume from one epoch, got {sorted(epochs)}")
        names = [n for n, _ in self._named()]
        for run, state in enumerate(states):
            if state is None:
                continue
            self.net.load_run_state_dict(run, state["model"])
            with torch.no_grad():
                for view, name in zip(self.sgd.flat.views(self.sgd.flat.momentum), names):
                    run_slice(view, self.net.shapes[name], self.runs, run).copy_(state["momentum"][name])
            self.histories[run] = list(state["history"])
            self.norm0[run] = state.get("norm0", self.norm0[run])
            if state.get("diverged"):
                self._freeze(run, Diverged(state["diverged"]["epoch"], state["diverged"]["reason"]))
        self.epoch = epochs.pop()
        self.sgd.set_epoch(self.epoch)

    def to(self, device) -> "Stack":
        """Move the runs, their losses and optimiser state (e.g. to the CPU for pickling)."""
        if self.train_module is not self.net:
            raise ValueError("a distributed (DDP) trainer cannot be moved")
        self.device = torch.device(device)
        self.net.to(self.device)
        self.losses = [loss.to(self.device) for loss in self.losses]
        self.__dict__.pop("_groups", None)
        self.sgd.rebind(self._params(), self.device)
        return self

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_groups", None)  # derived from the losses and the device
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.sgd.rebind(self._params())


def accuracies(logits: torch.Tensor, data: DeviceData) -> list[float]:
    """Each run's accuracy, from logits ``(R, N, K)``, on ``data``'s labels (one host sync)."""
    return (logits.argmax(2) == data.y).float().mean(1).tolist()


class Trainer:
    """One run: the R = 1 stack, seen with single-run shapes (the building block of a method's learner)."""

    def __init__(self, model: nn.Module, loss: nn.Module, config: TrainConfig, device, *, seed: int = 0, ddp=False):
        self.stack = Stack([model], [loss], [config], [seed], device, ddp=ddp)

    model = property(lambda self: self.stack.net.body)
    loss = property(lambda self: self.stack.losses[0])
    config = property(lambda self: self.stack.config)
    device = property(lambda self: self.stack.device)
    history = property(lambda self: self.stack.histories[0])
    epoch = property(lambda self: self.stack.epoch)
    epochs = property(lambda self: self.stack.epochs)

    def start_epoch(self) -> None:
        self.stack.start_epoch()

    def batches(self, data: DeviceData, rank: int = 0, world: int = 1):
        """Start the epoch and yield its shuffled, augmented ``(index, inputs, labels)`` batches."""
        for idx, xb, yb, _ in self.stack.batches(data, rank=rank, world=world):
            yield idx[0], xb[0], yb[0]

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        """Training-mode fp32 logits ``(B, K)``."""
        return self.stack.forward(xb.unsqueeze(0))[0]

    def update(self, loss: torch.Tensor) -> None:
        """One SGD step on the scalar ``loss``."""
        self.stack.step(loss.reshape(1))

    def _one(self, stats: list[dict | None]) -> dict:
        if stats[0] is None:
            raise self.stack.diverged[0]
        return stats[0]

    def finish_epoch(self, loss_sum, correct, seen: int, **extra) -> dict:
        """Count the epoch and record its statistics; raises ``Diverged`` when the run blew up."""
        return self._one(self.stack.finish_epoch(loss_sum.reshape(1), correct.reshape(1), seen, **extra))

    def train_epoch(self, data: DeviceData, rank: int = 0, world: int = 1) -> dict:
        """One pass over ``data``; the epoch's mean loss and accuracy on the given labels."""
        return self._one(self.stack.train_epoch(data, rank=rank, world=world))

    def logits(self, data: DeviceData) -> torch.Tensor:
        """Eval-mode fp32 logits ``(N, K)``."""
        return self.stack.logits(data)[0]

    def accuracy(self, data: DeviceData) -> float:
        return self.stack.accuracies(data)[0]

    def to(self, device) -> "Trainer":
        self.stack.to(device)
        return self

    def state_dict(self) -> dict:
        return self.stack.run_state(0)

    def load_state_dict(self, state: dict) -> None:
        self.stack.load_states([state])


def seeded_init(seed: int, build):
    """Call ``build()`` with the torch RNG seeded, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@contextlib.contextmanager
def deterministic(enabled: bool = True):
    """PyTorch's deterministic kernels (and cuDNN's) while the block runs; the previous modes after.

    Costs speed on CUDA; on a CPU the engine's kernels are deterministic already.
    """
    if not enabled:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)  # fmt: skip
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
