"""``--stack auto``: the number of runs to train at once, chosen by timing real steps, never by guess.

Stacking pays where a step is dominated by per-op overhead (small networks, GPUs) and can lose where
it is compute-bound (a CPU's grouped convolutions are slower per FLOP than dense ones). So the probe
times a few steps of the actual network, batch and device at R = 1, 2, 4, ... and keeps doubling only
while the time per run falls by at least ``GAIN``; on a GPU it also stops before memory runs short.
"""

from __future__ import annotations

import math
import time

import torch

GAIN = 0.9  # a larger stack must cut the time per run by at least 10 %
MAX_STACK = 64
PROBE_SECONDS = 0.08  # per candidate size, after one warm-up step


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_seconds(parts, inputs: torch.Tensor, runs: int, device, input_shape) -> float:
    """Seconds per training step of a stack of ``runs`` copies of ``parts`` = (model, loss, config, seed)."""
    import copy

    from jal_plugins.engine import Stack

    model, loss, config, seed = parts
    stack = Stack([copy.deepcopy(model) for _ in range(runs)], [copy.deepcopy(loss) for _ in range(runs)],
                  [config] * runs, [seed + r for r in range(runs)], device, input_shape=input_shape)  # fmt: skip
    xb = inputs.to(device).unsqueeze(0).expand(runs, *inputs.shape)
    yb = torch.randint(0, 2, (runs, inputs.shape[0]), device=device, generator=torch.Generator(device=device).manual_seed(0))
    stack.start_epoch()

    def one():
        stack.step(stack.per_sample(stack.forward(xb), yb).mean(1))

    one()
    _sync(device)
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < PROBE_SECONDS:
        one()
        steps += 1
        _sync(device)
    return (time.perf_counter() - start) / steps


def bytes_per_run(parts, inputs: torch.Tensor) -> int:
    """Memory one run of a stack needs: its parameters four times over (weights, gradients, momentum,
    per-run optimiser numbers) and the activations a training step saves for backward."""
    model, loss, _, _ = parts
    saved = 0

    def pack(t):
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    sample = inputs[:8].float().cpu()  # saved activations grow with the batch: time 8, scale up
    model = model.to("cpu").train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(sample)
        loss.to("cpu")(out, torch.zeros(len(out), dtype=torch.long)).mean()
    return 4 * sum(p.numel() * p.element_size() for p in model.parameters()) + saved * len(inputs) // len(sample)


def available_bytes(device) -> int:
    """Free memory of ``device``: the GPU's, or the machine's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 1 << 62  # unknown: do not limit


def max_fitting(per_run: int, device) -> int:
    """The largest stack that fits in 70 % of ``device``'s free memory."""
    return max(1, int(0.7 * available_bytes(device) // max(per_run, 1)))


def _measure(parts, inputs, limit: int, device, input_shape) -> int:
    from jal_plugins.stack import NotStackable

    limit = min(limit, MAX_STACK, max_fitting(bytes_per_run(parts, inputs), device))
    per_run = step_seconds(parts, inputs, 1, device, input_shape)
    best, size = 1, 2
    while size <= limit:
        try:
            seconds = step_seconds(parts, inputs, size, device, input_shape) / size
        except NotStackable:
            return 1
        except torch.cuda.OutOfMemoryError:
            break
        if seconds > GAIN * per_run:
            break
        best, per_run, size = size, seconds, size * 2
    return best


_CHOSEN: dict[tuple, int] = {}


def choose_stack_size(key: tuple, parts_factory, inputs_factory, limit: int, device, input_shape,
                      threads: int | None = None) -> int:  # fmt: skip
    """The measured best stack size for up to ``limit`` runs (1 when stacking does not pay).

    ``key`` identifies the network, batch and device (the choice is kept per process);
    ``parts_factory()`` gives one run's (model, loss, config, seed) and ``inputs_factory()`` a batch of
    prepared inputs; ``threads`` times with as many threads as each worker process will have.
    """
    if limit <= 1:
        return 1
    key = (*key, limit, threads)
    if key not in _CHOSEN:
        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            _CHOSEN[key] = _measure(parts_factory(), inputs_factory(), limit, device, input_shape)
        finally:
            torch.set_num_threads(previous)
    return _CHOSEN[key]


def chunks(items: list, size: int, workers: int = 1) -> list[list]:
    """``items`` split into near-equal stacks of at most ``size``, at least ``workers`` of them when possible."""
    count = math.ceil(len(items) / max(size, 1))
    if workers > 1 and count % workers and len(items) >= workers:
        count += workers - count % workers  # every worker gets as many stacks
    count = min(max(count, 1), len(items))
    base, extra = divmod(len(items), count)
    out, start = [], 0
    for i in range(count):
        n = base + (i < extra)
        out.append(items[start : start + n])
        start += n
    return out
