"""R networks of one architecture as one network, so R runs train in one forward/backward pass.

Mechanism: every layer that holds weights is rewritten to carry the R runs side by side, run-major
along its channel axis: a convolution becomes one convolution with ``groups × R`` groups, BatchNorm
gets ``R·C`` channels (each run normalises over its own batch only), a linear layer becomes one
batched matmul. Activations travel as ``(B, R·C, ...)``, so channel-wise layers (ReLU, pooling,
flatten, global means) work unchanged and a model's own ``forward`` keeps running as written.

Why plain grouped layers and not ``torch.func`` (``stack_module_state`` + ``vmap`` +
``functional_call``): both end up in the same grouped convolutions, but plain modules keep
BatchNorm's running statistics as ordinary buffers, behave normally under autocast (bf16 did nothing
inside ``vmap`` on CPU), ``torch.compile`` and DDP, and add no per-op batching overhead; measured on
2 CPU cores (``benchmarks/stacked_speed.py --compare-vmap``) they were also the faster of the two.

A network stacks when every layer with weights is a Conv1d/Conv2d, BatchNorm1d/2d or Linear and its
other layers act per channel. ``StackedNet`` checks that on an example input (each run's slice of
the stacked output must equal that run's own network's output) and raises ``NotStackable``
otherwise, so the runner falls back to single runs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

CONV = (nn.Conv1d, nn.Conv2d)
NORM = (nn.BatchNorm1d, nn.BatchNorm2d)
RANDOM = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)


class NotStackable(ValueError):
    """The network cannot be trained as a stack; train its runs one at a time."""


class StackedLinear(nn.Module):
    """R linear layers: ``(B, R·in) -> (B, R·out)``; weight ``(R, out, in)``, bias ``(R, out)``."""

    def __init__(self, peers: list[nn.Linear]):
        super().__init__()
        self.runs = len(peers)
        self.weight = nn.Parameter(torch.stack([p.weight.detach() for p in peers]))
        self.bias = nn.Parameter(torch.stack([p.bias.detach() for p in peers])) if peers[0].bias is not None else None

    def forward(self, x):
        b = x.shape[0]
        return self.run_major(x.reshape(b, self.runs, -1).transpose(0, 1)).transpose(0, 1).reshape(b, -1)

    def run_major(self, x):
        """``(R, B, in) -> (R, B, out)``: the layout a stack of MLPs keeps throughout (no copies)."""
        w = self.weight.transpose(1, 2)
        return torch.bmm(x, w) if self.bias is None else torch.baddbmm(self.bias.unsqueeze(1), x, w)


# Parameter-free layers that act on each element alone, so they run in any layout.
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity)


def run_major_layers(body: nn.Module) -> list[nn.Module] | None:
    """The layers of a stacked MLP (a plain ``nn.Sequential`` of an optional leading ``Flatten``,
    linear layers and elementwise activations), which can run on ``(R, B, F)`` activations; None for
    any other network. The channel-major layout ``(B, R·F)`` costs an MLP two copies a layer each way."""
    if not isinstance(body, nn.Sequential) or type(body).forward is not nn.Sequential.forward:
        return None
    layers = list(body)
    if layers and isinstance(layers[0], nn.Flatten) and (layers[0].start_dim, layers[0].end_dim) == (1, -1):
        layers = layers[1:]
    if not any(isinstance(m, StackedLinear) for m in layers):
        return None
    if not all(isinstance(m, StackedLinear) or type(m) in ELEMENTWISE for m in layers):
        return None
    return layers


def _cat(tensors) -> torch.Tensor:
    return torch.cat([t.detach() for t in tensors])


def _stack_leaf(name: str, module: nn.Module, peers: list[nn.Module]) -> nn.Module:
    r = len(peers)
    kind = type(module)
    if kind in CONV:
        m = module
        out = kind(m.in_channels * r, m.out_channels * r, m.kernel_size, m.stride, m.padding, m.dilation,
                   m.groups * r, m.bias is not None, m.padding_mode, device=m.weight.device, dtype=m.weight.dtype)  # fmt: skip
        out.weight.data = _cat(p.weight for p in peers)
        if m.bias is not None:
            out.bias.data = _cat(p.bias for p in peers)
        return out
    if kind in NORM:
        m = module
        device = next(iter([*m.parameters(), *m.buffers()]), torch.empty(0)).device
        out = kind(m.num_features * r, m.eps, m.momentum, m.affine, m.track_running_stats, device=device)
        for attr in ("weight", "bias", "running_mean", "running_var"):
            if getattr(m, attr, None) is not None:
                getattr(out, attr).data = _cat(getattr(p, attr) for p in peers)
        if m.track_running_stats:
            out.num_batches_tracked.data = m.num_batches_tracked.detach().clone()
        return out
    if kind is nn.Linear:
        return StackedLinear(peers)
    if isinstance(module, RANDOM):
        raise NotStackable(f"{name or 'the network'} is a {kind.__name__}: its random masks would differ from single runs")
    if any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
        raise NotStackable(f"{name or 'the network'} is a {kind.__name__}, a layer with weights that cannot be stacked "
                           "(stackable: Conv1d/Conv2d, BatchNorm1d/2d, Linear)")  # fmt: skip
    return module  # parameter-free: acts per channel (checked by StackedNet on an example)


def stack_modules(models: list[nn.Module]) -> nn.Module:
    """One network computing ``models`` side by side on ``(B, R·C, ...)`` activations (R = 1: the model)."""
    if len(models) == 1:
        return models[0]
    kinds = {type(m) for m in models}
    if len(kinds) != 1:
        raise NotStackable(f"a stack needs one architecture, got {sorted(k.__name__ for k in kinds)}")
    skeleton = copy.deepcopy(models[0])
    for name, module in list(skeleton.named_modules()):
        if any(True for _ in module.children()):
            if any(True for _ in module.parameters(recurse=False)):
                raise NotStackable(f"{name or type(module).__name__} holds weights outside a stackable layer")
            continue
        stacked = _stack_leaf(name, module, [m.get_submodule(name) for m in models])
        if not name:
            return stacked
        if stacked is not module:
            parent, _, child = name.rpartition(".")
            setattr(skeleton.get_submodule(parent), child, stacked)
    return skeleton


def run_slice(stacked: torch.Tensor, shape: torch.Size, runs: int, run: int) -> torch.Tensor:
    """Run ``run``'s part of a stacked parameter or buffer whose single-run shape is ``shape``."""
    if stacked.ndim == len(shape) + 1 and stacked.shape[1:] == shape:  # stacked along a new axis
        return stacked[run]
    if stacked.ndim == len(shape) >= 1 and stacked.shape[0] == runs * shape[0] and stacked.shape[1:] == shape[1:]:
        return stacked.unflatten(0, (runs, shape[0]))[run]  # concatenated along the channel axis
    if stacked.shape == shape:
        return stacked  # shared by every run (BatchNorm's step counter)
    raise ValueError(f"a stacked tensor of shape {tuple(stacked.shape)} does not hold {runs} runs of {tuple(shape)}")


class StackedNet(nn.Module):
    """R networks of one architecture as one module: ``(R, B, ...) inputs -> (R, B, K) logits``.

    ``example`` (one batch of inputs) verifies that every run computes what its own network does.
    ``state_dict(run)`` / ``load_run_state_dict(run, state)`` read and write one run's weights in the
    original network's format, so a checkpoint does not depend on the stack it was trained in.
    """

    def __init__(self, models: list[nn.Module], example: torch.Tensor | None = None):
        super().__init__()
        self.runs = len(models)
        self.shapes = {k: v.shape for k, v in models[0].state_dict().items()}
        self.body = stack_modules(models)
        self._run_major = run_major_layers(self.body) if self.runs > 1 else None
        if example is not None and self.runs > 1:
            self._check(models, example)

    channels_last = False  # set by engine.Stack: images enter in the layout the convolutions run fastest in

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """``(R, B, C, ...)`` -> ``(B, R·C, ...)``."""
        x = x[0] if self.runs == 1 else x.transpose(0, 1).reshape(x.shape[1], self.runs * x.shape[2], *x.shape[3:])
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._run_major is not None:
            x = x.flatten(2)
            for layer in self._run_major:
                x = layer.run_major(x) if isinstance(layer, StackedLinear) else layer(x)
            return x
        out = self.body(self._layout(x))
        return out.unsqueeze(0) if self.runs == 1 else out.view(out.shape[0], self.runs, -1).transpose(0, 1)

    @torch.no_grad()
    def _check(self, models, example):
        modes = [m.training for m in (*models, self)]
        for m in (*models, self):
            m.eval()
        # each run sees a different input, so anything that mixes runs shows
        scale = torch.linspace(1.0, 2.0, self.runs, device=example.device).view(-1, *[1] * example.ndim)
        inputs = example.unsqueeze(0) * scale
        try:
            stacked = self(inputs)
            alone = torch.stack([m(x) for m, x in zip(models, inputs)])
        except RuntimeError as exc:
            raise NotStackable(f"{type(models[0]).__name__} does not run as a stack: {exc}") from None
        finally:
            for m, mode in zip((*models, self), modes):
                m.train(mode)
        if stacked.shape != alone.shape or not torch.allclose(stacked.float(), alone.float(), rtol=1e-3, atol=1e-4):
            raise NotStackable(f"{type(models[0]).__name__} mixes what a stack keeps apart (its forward is not per channel)")

    def run_state_dict(self, run: int, state: dict | None = None) -> dict[str, torch.Tensor]:
        """Run ``run``'s weights and buffers, keyed and shaped as in its own network (``state``: the
        stack's own ``body.state_dict()``, when the caller has it)."""
        state = self.body.state_dict() if state is None else state
        return {k: run_slice(state[k], shape, self.runs, run).clone() for k, shape in self.shapes.items()}

    @torch.no_grad()
    def load_run_state_dict(self, run: int, state: dict[str, torch.Tensor]) -> None:
        own = self.body.state_dict()
        missing = set(self.shapes) - set(state)
        if missing:
            raise ValueError(f"checkpoint lacks {sorted(missing)}")
        for k, shape in self.shapes.items():
            run_slice(own[k], shape, self.runs, run).copy_(state[k])


__all__ = ["NotStackable", "StackedLinear", "StackedNet", "run_slice", "stack_modules"]
