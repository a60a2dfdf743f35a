"""Several runs' losses in one call: runs whose losses differ only in row-wise hyperparameters.

A stack that trains, say, JAL-CE with eight values of ``a`` would otherwise call the loss eight times
per step, about twenty small ops each way. A loss class lists in ``row_params`` the hyperparameters
its ``per_sample`` also accepts as one value per row (with the shape they take: ``(-1,)`` or
``(-1, 1)``); ``RowLoss`` gives every run's rows their run's values and computes all runs at once.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def structure(loss: nn.Module) -> tuple:
    """What must be equal for losses to share a call: the module tree and every other hyperparameter."""
    parts = []
    for module in loss.modules():
        rows = getattr(type(module), "row_params", {})
        if hasattr(module, "structure"):
            key = module.structure()
        elif rows:  # the class keeps every other hyperparameter in ``hparams``
            key = repr(sorted((k, v) for k, v in module.hparams.items() if k not in rows))
        else:
            key = module.extra_repr()
        parts.append((type(module).__module__, type(module).__qualname__, key))
    return tuple(parts)


class RowLoss:
    """``losses`` (one per run, equal ``structure``) on their runs' consecutive, equal blocks of rows."""

    def __init__(self, losses: list[nn.Module]):
        self.runs = len(losses)
        self.merged = copy.deepcopy(losses[0])
        self.params = []  # (module, attribute, dict key or None, per-run values, per-row shape)
        for modules in zip(*(loss.modules() for loss in losses), self.merged.modules()):
            *peers, target = modules
            for name, shape in getattr(type(target), "row_params", {}).items():
                values = [getattr(p, name) for p in peers]
                if isinstance(values[0], dict):
                    for key in values[0]:
                        self._add(target, name, key, [v[key] for v in values], shape)
                else:
                    self._add(target, name, None, values, shape)
        self._cache: dict[tuple, list[torch.Tensor]] = {}

    def _add(self, module, name, key, values, shape) -> None:
        if len(set(values)) > 1:
            self.params.append((module, name, key, torch.tensor(values, dtype=torch.float64), shape))

    def to(self, device) -> RowLoss:
        self.merged.to(device)
        self.params = [(m, n, k, v.to(device), s) for m, n, k, v, s in self.params]
        self._cache.clear()
        return self

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        rows = logits.shape[0] // self.runs
        key = (rows, logits.device, logits.dtype)
        if key not in self._cache:  # values in the logits' precision, as the Python floats they replace
            dtype = torch.promote_types(logits.dtype, torch.float32)
            self._cache[key] = [v.to(dtype).repeat_interleave(rows).view(shape) for *_, v, shape in self.params]
        for (module, name, dict_key, *_), value in zip(self.params, self._cache[key]):
            if dict_key is None:
                setattr(module, name, value)
            else:
                getattr(module, name)[dict_key] = value
        return self.merged(logits, target)


def loss_groups(losses: list[nn.Module], device) -> list[tuple[slice | torch.Tensor, object]]:
    """The calls a stack makes per step: ``(runs, loss)`` with runs sharing a structure in one call.

    Consecutive runs are a slice (a view, no gather); the runner orders stacks by loss so they are.
    """
    groups: dict[tuple, list[int]] = {}
    for r, loss in enumerate(losses):
        groups.setdefault(structure(loss), []).append(r)
    out = []
    for runs in groups.values():
        same = len({repr(losses[r]) for r in runs}) == 1
        out.append((runs, losses[runs[0]] if same else RowLoss([losses[r] for r in runs]).to(device)))
    if all(g == list(range(g[0], g[-1] + 1)) for g, _ in out) and sorted(g for g, _ in out) == [g for g, _ in out]:
        return [(slice(g[0], g[-1] + 1), loss) for g, loss in out]
    return [(torch.tensor(g, device=device), loss) for g, loss in out]
