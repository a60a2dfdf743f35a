"""SGD for R runs at once: their parameters, gradients and momentum in three flat buffers.

The layers' weights are views into the flat buffers, so one step is a few tensor ops whatever the
number of layers, with each run's own learning rate (and schedule), momentum, weight decay, L1
penalty and gradient clipping by its own norm: every run takes the step ``torch.optim.SGD`` with
``clip_grad_norm_`` would take for it alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FlatParams:
    """The trainable parameters of a stack as views into one flat buffer, their gradients into another.

    Every parameter stores its R runs as R equal, consecutive blocks (its first axis is run-major),
    so per-run numbers broadcast through ``run_of`` and per-run sums reduce block by block.
    """

    def __init__(self, params: list[nn.Parameter], runs: int, momentum: torch.Tensor | None = None):
        self.runs = runs
        device = params[0].device
        self.blocks: list[tuple[int, int]] = []
        total = sum(p.numel() for p in params)
        self.data = torch.empty(total, device=device)
        self.grad = torch.zeros(total, device=device)
        self.momentum = torch.zeros(total, device=device) if momentum is None else momentum.to(device)
        offset = 0
        for p in params:
            if p.dtype != torch.float32 or p.numel() % runs or p.stride(0) != p.numel() // p.shape[0]:
                raise ValueError(f"cannot train a parameter of shape {tuple(p.shape)}, dtype {p.dtype} in a flat buffer")
            view = self.data.as_strided(p.shape, p.stride(), offset)
            view.copy_(p.detach())
            p.data = view
            p.grad = self.grad.as_strided(p.shape, p.stride(), offset)
            self.blocks.append((offset, p.numel()))
            offset += p.numel()
        self.params = params
        self.run_of = torch.cat([torch.arange(runs, device=device).repeat_interleave(n // runs) for _, n in self.blocks])

    def views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """``buffer`` (data, grad or momentum) seen as the parameters' shapes."""
        return [buffer.as_strided(p.shape, p.stride(), o) for p, (o, _) in zip(self.params, self.blocks)]

    def per_run_norm(self, values: torch.Tensor) -> torch.Tensor:
        """``(R,)`` L2 norms of a flat tensor over each run's elements (no squared copy of it)."""
        r = self.runs
        blocks = [torch.linalg.vector_norm(values[o : o + n].view(r, -1), dim=1) for o, n in self.blocks]
        return torch.stack(blocks).square().sum(0).sqrt()

    def per_run_scale(self, values: torch.Tensor, scale: torch.Tensor) -> None:
        """Multiply each run's elements of a flat tensor by its entry of ``scale`` (R,), in place."""
        if self.runs == 1:
            values.mul_(scale)
            return
        for o, n in self.blocks:
            values[o : o + n].view(self.runs, -1).mul_(scale.unsqueeze(1))

    def rebind_grads(self) -> None:
        """Put gradients that something replaced (DDP) back into the flat gradient buffer."""
        for p, view in zip(self.params, self.views(self.grad)):
            if p.grad is not view:
                view.copy_(p.grad)
                p.grad = view


def _axpy(y: torch.Tensor, a, x: torch.Tensor) -> None:
    """``y += a * x`` for a float or a per-element tensor ``a``."""
    if isinstance(a, float):
        y.add_(x, alpha=a)
    else:
        y.addcmul_(a, x)


class SGD:
    """Per-run SGD over a stack's parameters, ``configs[r]`` giving run r's settings.

    ``bind(params)`` takes the parameters (again after a move or an unpickling, which copy tensors
    apart from their views); only the momentum and the frozen runs are state of its own.
    """

    def __init__(self, configs: list, params: list[nn.Parameter], momentum: torch.Tensor | None = None):
        self.configs = list(configs)
        self.live = [True] * len(self.configs)
        self.bind(params, momentum)

    @property
    def runs(self) -> int:
        return len(self.configs)

    def bind(self, params: list[nn.Parameter], momentum: torch.Tensor | None = None) -> None:
        """(Re)build the flat buffers and the per-run numbers around ``params``."""
        self.flat = FlatParams(params, self.runs, momentum)
        self.device = self.flat.data.device
        configs = self.configs
        self._momentum = self._per_run([c.momentum for c in configs])
        self._wd = self._per_run([c.weight_decay for c in configs]) if any(c.weight_decay for c in configs) else None
        self._l1 = self._per_run([c.l1 for c in configs]) if any(c.l1 for c in configs) else None
        clips = [c.clip if c.clip else math.inf for c in configs]
        self._clip = None if all(c == math.inf for c in clips) else torch.tensor(clips, device=self.device)
        self._live = torch.tensor(self.live, dtype=torch.float32, device=self.device)
        self.set_epoch(0)

    def _per_run(self, values: list[float]):
        """One number per run as a float when the runs agree, else as a per-element tensor."""
        if len(set(values)) == 1:
            return float(values[0])
        return torch.tensor(values, dtype=torch.float32, device=self.device)[self.flat.run_of]

    def set_epoch(self, epoch: int) -> None:
        """Each live run's learning rate for ``epoch`` (0-based) of its schedule."""
        self.epoch = epoch
        lrs = [c.lr_at(min(epoch, c.epochs - 1)) * live for c, live in zip(self.configs, self.live)]
        self._lr = self._per_run(lrs)

    def norms(self) -> torch.Tensor:
        """``(R,)`` L2 norms of each run's parameters."""
        with torch.no_grad():
            return self.flat.per_run_norm(self.flat.data)

    def step(self, run_losses: torch.Tensor, ddp: bool = False) -> None:
        """One step of every run on its ``(R,)`` loss: L1, per-run clipping, weight decay, momentum.

        ``ddp``: the backward pass ran through DDP, which replaces the gradients."""
        flat = self.flat
        flat.grad.zero_()
        (run_losses * self._live).sum().backward()  # a sum, not a mean: each run steps as it would alone
        if ddp:
            flat.rebind_grads()
        g, w = flat.grad, flat.data
        if self._l1 is not None:  # d(λ·Σ|θ|)/dθ = λ·sign(θ), before clipping as in the reference loops
            _axpy(g, self._l1, w.sign())
        if self._clip is not None:  # torch.nn.utils.clip_grad_norm_, run by run
            flat.per_run_scale(g, (self._clip / (flat.per_run_norm(g) + 1e-6)).clamp(max=1.0))
        if self._wd is not None:  # coupled L2, added after clipping as torch.optim.SGD does
            _axpy(g, self._wd, w)
        if isinstance(self._momentum, float):  # m = g + μ·m in one pass
            torch.add(g, flat.momentum, alpha=self._momentum, out=flat.momentum)
        else:
            flat.momentum.mul_(self._momentum).add_(g)
        if isinstance(self._lr, float):
            w.add_(flat.momentum, alpha=-self._lr)
        else:
            w.addcmul_(self._lr, flat.momentum, value=-1.0)

    def freeze(self, run: int) -> None:
        """No more steps for ``run``: no loss, no learning rate (its buffers are the stack's to zero)."""
        self.live[run] = False
        self._live[run] = 0.0
        self.set_epoch(self.epoch)

    def __getstate__(self):
        # the flat buffers alias the network's parameters; a copy would hold them apart, so only the
        # momentum travels and the owner binds the parameters again
        return {"configs": self.configs, "live": self.live, "momentum": self.flat.momentum, "epoch": self.epoch}

    def __setstate__(self, state):
        self.configs, self.live, self._pending = state["configs"], state["live"], (state["momentum"], state["epoch"])

    def rebind(self, params: list[nn.Parameter], device=None) -> None:
        """Bind ``params`` after an unpickling or a move, keeping the momentum and the schedule."""
        momentum, epoch = self.__dict__.pop("_pending", None) or (self.flat.momentum, self.epoch)
        self.bind(params, momentum if device is None else momentum.to(device))
        self.set_epoch(epoch)
