"""``--stack auto``: the number of runs to train at once, chosen by timing real steps, never by guess.

Stacking pays where a step is dominated by per-op overhead (small networks, GPUs) and can lose where
it is compute-bound (a CPU's grouped convolutions are slower per FLOP than dense ones). So the probe
times a few steps of the actual network, batch and device at R = 1, 2, 4, ... and at the number of
runs itself, stops at the first size clearly slower per run than the best (or where memory would
run short), and keeps, of the sizes whose stacks would train all the runs within ``GAIN`` of the
fastest (the runs are cut into near-equal stacks, so 10 runs at size 4 train as 4 + 3 + 3), the
smallest for the runner's units and the largest for ``Stacks``, which trains the stacks of one
process one after another.
"""

from __future__ import annotations

import math
import time

import torch

GAIN = 0.9  # a larger stack must cut the time per run by at least 10 %
SLOWER = 1.25  # a stack this much slower per run than the best so far ends the probe
MAX_STACK = 64
PROBE_SECONDS = 0.08  # per candidate size, after one warm-up epoch


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


PROBE_BATCHES = 2  # batches an epoch of the probe: real epochs, so the sampling and bookkeeping count


def step_seconds(parts, inputs: torch.Tensor, runs: int, device, input_shape) -> float:
    """Seconds per training step of a stack of ``runs`` copies of ``parts`` = (model, loss, config, seed),
    timed over whole epochs of ``PROBE_BATCHES`` batches like ``inputs``: a step costs its batch's
    gathering and the epoch's accounting too, and those grow with the number of stacks, not of runs."""
    import copy

    from jal_plugins.engine import DeviceData, Stack

    model, loss, config, seed = parts
    stack = Stack([copy.deepcopy(model) for _ in range(runs)], [copy.deepcopy(loss) for _ in range(runs)],
                  [config] * runs, [seed + r for r in range(runs)], device, input_shape=input_shape)  # fmt: skip
    x = inputs.repeat(PROBE_BATCHES, *[1] * (inputs.ndim - 1))
    y = torch.randint(0, 2, (len(x),), generator=torch.Generator().manual_seed(0))
    data = DeviceData(x, y, device)
    stack.train_epoch(data)  # warm-up
    _sync(device)
    epochs, start = 0, time.perf_counter()
    while epochs < 1 or time.perf_counter() - start < PROBE_SECONDS:
        stack.train_epoch(data)
        epochs += 1
    _sync(device)
    return (time.perf_counter() - start) / (epochs * PROBE_BATCHES)


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


def _measure(parts, inputs, limit: int, device, input_shape) -> dict[int, float]:
    """Measured ``{stack size: seconds per run}`` up to ``limit`` runs (only 1 for a network that does
    not stack)."""
    from jal_plugins.stack import NotStackable

    limit = min(limit, MAX_STACK, max_fitting(bytes_per_run(parts, inputs), device))
    per_run = {1: step_seconds(parts, inputs, 1, device, input_shape)}
    size = 2
    while size <= limit:
        try:
            per_run[size] = step_seconds(parts, inputs, size, device, input_shape) / size
        except NotStackable:
            return {1: per_run[1]}
        except torch.cuda.OutOfMemoryError:
            break
        # a plateau may come before a gain (an MLP on a CPU: 2 ~ 4, then 8 is 1.7x faster), so go
        # on doubling until a size is clearly slower than the best
        if per_run[size] > SLOWER * min(per_run.values()):
            break
        size = limit if size < limit < 2 * size else 2 * size
    return per_run


def stackable(parts_factory, device, input_shape) -> bool:
    """Whether the network of ``parts_factory()`` trains as a stack (checked on an example input)."""
    from jal_plugins.stack import NotStackable, StackedNet

    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        StackedNet([parts_factory()[0].to(device) for _ in range(2)], example)
    except NotStackable:
        return False
    return True


def best_size(per_run: dict[int, float], runs: int, fewest: bool = False) -> int:
    """The smallest stack size (``fewest``: the largest) at which ``runs`` runs, cut into near-equal
    stacks (``chunks``), train within ``GAIN`` of the fastest; ``per_run``: measured ``{size: seconds
    per run}``, a stack of a size not measured counted at the largest measured size below it."""

    def seconds(size: int) -> float:
        return sum(len(c) * per_run[max(s for s in per_run if s <= len(c))] for c in chunks(range(runs), size))

    totals = {size: seconds(size) for size in per_run if size <= runs}
    best = min(totals.values())
    near = [size for size, total in totals.items() if GAIN * total <= best]
    return max(near) if fewest else min(near)


_MEASURED: dict[tuple, dict[int, float]] = {}


def choose_stack_size(key: tuple, parts_factory, inputs_factory, limit: int, device, input_shape,
                      threads: int | None = None, fewest: bool = False) -> int:  # fmt: skip
    """The measured best stack size for ``limit`` runs (1 when stacking does not pay; ``best_size``).

    ``key`` identifies the network, batch and device (the timings are kept per process);
    ``parts_factory()`` gives one run's (model, loss, config, seed) and ``inputs_factory()`` a batch of
    prepared inputs; ``threads`` times with as many threads as each worker process will have.
    ``fewest``: of sizes about as fast, the largest (runs that train in one process, one stack after
    another: each stack costs a little the probe does not see); else the smallest (units that spread
    over workers and checkpoint apart).
    """
    if limit <= 1:
        return 1
    key = (*key, limit, threads)
    if key not in _MEASURED:
        previous = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            _MEASURED[key] = _measure(parts_factory(), inputs_factory(), limit, device, input_shape)
        finally:
            torch.set_num_threads(previous)
    return best_size(_MEASURED[key], limit, fewest)


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


class Stacks:
    """R runs as consecutive stacks, behind the interface of one ``Stack`` of R runs.

    A selection's candidates and an audit's folds are R runs of one network that train together;
    where one stack of R is slower than smaller ones (a CPU's CNNs), ``measured_stacks`` makes them
    several stacks of the measured size, trained one after another each epoch. Every run gets what
    it would get in one stack, or alone.
    """

    def __init__(self, parts: list[tuple], sizes: list[int], device, input_shape: tuple):
        self._build = parts, device, input_shape
        self._group(sizes)

    def _group(self, sizes: list[int]) -> None:
        from jal_plugins.engine import Stack

        parts, device, shape = self._build
        if sum(sizes) != len(parts) or min(sizes) < 1:
            raise ValueError(f"stack sizes {sizes} do not split {len(parts)} runs")
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.stacks = [Stack(*zip(*parts[s : s + n]), device, input_shape=shape) for s, n in zip(starts, sizes)]
        self.runs = len(parts)

    @property
    def sizes(self) -> list[int]:
        """The runs of each stack: saved with the run states, so a resume regroups the runs alike."""
        return [s.runs for s in self.stacks]

    @property
    def epoch(self) -> int:
        return self.stacks[0].epoch

    @property
    def epochs(self) -> int:
        return self.stacks[0].epochs

    @property
    def diverged(self) -> list:
        return [d for s in self.stacks for d in s.diverged]

    @property
    def histories(self) -> list:
        return [h for s in self.stacks for h in s.histories]

    @property
    def module(self):
        """The first stack's network: what a learner shows as its model while the runs train."""
        return self.stacks[0].net.body

    def info(self, run: int) -> dict:
        return {}

    def _split(self, per_run) -> list:
        """A per-run sequence (or tensor with a leading run axis) cut into each stack's part."""
        if per_run is None:
            return [None] * len(self.stacks)
        out, start = [], 0
        for s in self.stacks:
            out.append(per_run[start : start + s.runs])
            start += s.runs
        return out

    def train_epoch(self, data, labels=None, weights=None, rows=None) -> list:
        """One epoch of every stack; each run's statistics in run order (None where it diverged)."""
        out = []
        for stack, l, w, r in zip(self.stacks, self._split(labels), self._split(weights), self._split(rows)):
            out += stack.train_epoch(data, l, w, r)
        return out

    def logits(self, data) -> torch.Tensor:
        return torch.cat([s.logits(data) for s in self.stacks])

    def accuracies(self, data) -> list[float]:
        return [a for s in self.stacks for a in s.accuracies(data)]

    def run_states(self) -> list[dict]:
        """Every run's checkpoint, in run order."""
        return [state for s in self.stacks for state in s.run_states()]

    def load_states(self, states: list, sizes: list[int] | None = None) -> None:
        """Run states in run order; ``sizes`` (the saving ``Stacks``' ``sizes``) regroups the runs first,
        since a float sum over another grouping of runs differs in its last digits."""
        if sizes is not None and list(sizes) != self.sizes:
            self._group(list(sizes))
        for s, part in zip(self.stacks, self._split(states)):
            s.load_states(part)

    def to(self, device):
        for s in self.stacks:
            s.to(device)
        return self


def measured_stacks(parts: list[tuple], device, input_shape: tuple) -> Stacks:
    """Runs ``parts`` = ``[(model, loss, config, seed), ...]`` as stacks of the measured best size."""
    device = torch.device(device)
    if input_shape is None:  # nothing to time on: every run alone
        return Stacks(parts, [1] * len(parts), device, None)
    model, _, config, _ = parts[0]
    shape = tuple(input_shape)
    key = ("stacks", type(model).__name__, sum(p.numel() for p in model.parameters()), shape, config.batch_size,
           str(device))  # fmt: skip
    size = choose_stack_size(key, lambda: parts[0], lambda: torch.randn(config.batch_size, *shape), len(parts),
                             device, shape, fewest=True)  # fmt: skip
    return Stacks(parts, [len(group) for group in chunks(parts, size)], device, shape)
