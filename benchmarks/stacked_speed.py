"""Seconds per run and runs per hour when R runs train as one stack, on whatever device this runs on.

For each workload (mlp on digits, cnn4 at 28x28, cnn8 at CIFAR-10 size) it trains real stacks of
R = 1, 2, 4, 8, 16 runs (and the size ``--stack auto`` picks) for a few epochs of a fixed number of
steps, and extrapolates the time per run to the workload's full recipe (epochs x training set):

    python benchmarks/stacked_speed.py                          # all workloads, default sizes
    python benchmarks/stacked_speed.py --workloads mlp-digits --sizes 1 2 4 8 16 32
    python benchmarks/stacked_speed.py --compare-vmap           # also time torch.func's vmap stacking

Data: digits ships with scikit-learn; cnn4 uses Fashion-MNIST when the Debian package is installed
(random images of the same shape otherwise: the timing is the same); cnn8 uses random 32x32 images.
Writes the table as JSON to ``--json`` (default benchmarks/results/stacked_speed-DEVICE.json).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from jal_plugins import create_loss, create_model
from jal_plugins.autostack import choose_stack_size
from jal_plugins.checks import device as resolve_device
from jal_plugins.engine import DeviceData, Stack, TrainConfig, seeded_init

# name -> (model, params, input shape, training-set size, epochs of the full recipe)
WORKLOADS = {
    "mlp-digits": ("mlp", {}, (1, 8, 8), 1297, 60),
    "cnn4-28px": ("cnn4", {}, (1, 28, 28), 10_000, 50),
    "cnn8-32px": ("cnn8", {}, (3, 32, 32), 50_000, 120),
}
BATCH = 128


def _data(name: str, shape, rows: int, device) -> DeviceData:
    rng = np.random.default_rng(0)
    if name == "mlp-digits":
        from jal_plugins.datasets import digits

        d = digits()
        x, y, mean, std = d.x_train[:rows], d.y_train[:rows], d.mean, d.std
    else:
        x = rng.integers(0, 256, (rows, *shape), dtype=np.uint8)
        if name == "cnn4-28px" and Path("/usr/share/datasets/fashion-mnist").is_dir():
            from jal_plugins.datasets.idx import fashion_mnist

            x = fashion_mnist(train_size=rows).x_train
        y, mean, std = rng.integers(0, 10, rows), [0.5] * shape[0], [0.25] * shape[0]
    return DeviceData(x, y, device, mean, std)


def _stack(name: str, runs: int, device):
    model, params, shape, _, _ = WORKLOADS[name]
    models = [seeded_init(r, lambda: create_model(model, 10, shape[0], shape[-1], **params)) for r in range(runs)]
    losses = [create_loss("jal-ce", 10, reduction="none") for _ in range(runs)]
    configs = [TrainConfig(epochs=3, batch_size=BATCH, lr=0.01, l1=5e-5, augment="crop-flip" if name == "cnn8-32px" else "none")] * runs
    return Stack(models, losses, configs, list(range(runs)), device, input_shape=shape)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(name: str, runs: int, steps: int, device) -> float:
    """Wall seconds of one training step of a stack of ``runs`` (data, augmentation, forward, backward, SGD)."""
    data = _data(name, WORKLOADS[name][2], steps * BATCH, device)
    stack = _stack(name, runs, device)
    labels = data.y.expand(runs, -1)
    stack.train_epoch(data, labels)  # warm-up epoch (allocator, cuDNN autotuning)
    _sync(device)
    start = time.perf_counter()
    stack.train_epoch(data, labels)
    _sync(device)
    return (time.perf_counter() - start) / steps


def vmap_seconds(name: str, runs: int, device, repeats: int = 10) -> tuple[float, float]:
    """(grouped layers, torch.func vmap) seconds of a forward+backward of ``runs`` runs on one batch."""
    from torch.func import functional_call, stack_module_state, vmap

    from jal_plugins.stack import StackedNet

    model, params, shape, _, _ = WORKLOADS[name]
    models = [create_model(model, 10, shape[0], shape[-1], **params).to(device) for _ in range(runs)]
    x = torch.randn(runs, BATCH, *shape, device=device)
    y = torch.randint(0, 10, (runs, BATCH), device=device)
    net = StackedNet(models)
    base = copy.deepcopy(models[0]).to("meta")
    weights, buffers = stack_module_state(models)

    def loss(out):
        return torch.nn.functional.cross_entropy(out.reshape(-1, 10), y.reshape(-1))

    def grouped():
        loss(net(x)).backward()

    def vmapped():
        loss(vmap(lambda p, b, xx: functional_call(base, (p, b), (xx,)))(weights, buffers, x)).backward()

    out = []
    for fn in (grouped, vmapped):
        fn()
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        _sync(device)
        out.append((time.perf_counter() - start) / repeats)
    return tuple(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=None, help="steps per timed epoch (default: by device)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compare-vmap", action="store_true", help="also time torch.func vmap stacking")
    parser.add_argument("--json", help="where to write the results")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"device {device} ({where}), torch {torch.__version__}\n")
    rows = []
    for name in args.workloads:
        model, params, shape, n_train, epochs = WORKLOADS[name]
        steps = args.steps or (10 if device.type == "cuda" or name == "mlp-digits" else 3)
        full_steps = epochs * -(-n_train // BATCH)

        def parts(model=model, params=params, shape=shape):
            net = seeded_init(0, lambda: create_model(model, 10, shape[0], shape[-1], **params))
            return net, create_loss("jal-ce", 10, reduction="none"), TrainConfig(batch_size=BATCH), 0

        auto = choose_stack_size((name, str(device)), parts, lambda: torch.randn(BATCH, *shape), max(args.sizes), device, shape)
        for runs in sorted(set(args.sizes) | {auto}):
            step = seconds_per_step(name, runs, steps, device)
            per_run = step * full_steps / runs
            row = {"workload": name, "model": model, "runs": runs, "auto": runs == auto, "seconds_per_step": step,
                   "seconds_per_run": per_run, "runs_per_hour": 3600 / per_run, "full_recipe_steps": full_steps}  # fmt: skip
            if args.compare_vmap and runs > 1:
                row["grouped_fwd_bwd"], row["vmap_fwd_bwd"] = vmap_seconds(name, runs, device)
            rows.append(row)
            extra = f"  fwd+bwd grouped {row['grouped_fwd_bwd'] * 1e3:.1f} ms, vmap {row['vmap_fwd_bwd'] * 1e3:.1f} ms" if "vmap_fwd_bwd" in row else ""
            print(f"{name:11s} R={runs:3d}{' (auto)' if runs == auto else '       '} {step * 1e3:9.1f} ms/step  "
                  f"{per_run:9.1f} s/run  {3600 / per_run:9.1f} runs/h{extra}", flush=True)  # fmt: skip
    out = Path(args.json or f"benchmarks/results/stacked_speed-{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": str(device), "where": where, "torch": torch.__version__, "rows": rows}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
