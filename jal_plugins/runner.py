"""The host runner: dataset × noise × loss × seed, with checkpoints, resume and atomic results."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RESULT_KEYS = ("dataset", "noise", "loss", "method", "seed")


@dataclass
class Job:
    """One training run; ``config`` holds engine fields (epochs, lr, ...) on top of the recipe."""

    dataset: str
    noise: str = "none"
    loss: str = "ce"
    seed: int = 0
    preset: str | None = None
    model: str | None = None
    method: str = "erm"
    config: dict = field(default_factory=dict)
    loss_params: dict = field(default_factory=dict)
    model_params: dict = field(default_factory=dict)
    dataset_params: dict = field(default_factory=dict)
    device: str = "auto"

    def key(self) -> str:
        return "|".join(str(getattr(self, k)) for k in RESULT_KEYS)

    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(str(getattr(self, k)) for k in RESULT_KEYS))


@functools.lru_cache(maxsize=4)
def _load_dataset(name: str, params_json: str):
    from jal_plugins.plugins import check_params, host

    entry = host()["datasets"].get(name)
    params = json.loads(params_json)
    check_params(entry, params, skip=0)
    return entry.factory(**params)


def load_dataset(name: str, **params):
    """A registered dataset (cached per process: a grid reuses it)."""
    return _load_dataset(name, json.dumps(params, sort_keys=True))


def auto_model(x_shape: tuple) -> tuple[str, dict]:
    """``mlp`` for tabular rows, ``cnn4`` for small or 1-channel images, ``cnn8`` for colour 32-px images."""
    if len(x_shape) == 2:
        return "mlp", {}
    c, h = x_shape[1], x_shape[2]
    return ("cnn8", {"input_size": h}) if c == 3 and h >= 32 else ("cnn4", {"input_size": h})


def noisy_labels(job: Job, data) -> tuple:
    """(noisy train labels, noise name, nominal rate) of ``job`` on ``data``."""
    from jal_plugins import create_noise_model
    from jal_plugins.cli import parse_spec

    if job.noise in ("none", "clean"):
        return data.y_train, "none", 0.0
    name, params = parse_spec(job.noise)
    if name in data.noisy_labels:  # real label sets that come with the dataset (CIFAR-N)
        return data.noisy_labels[name], name, None
    model = create_noise_model(name, **params)
    features = data.features() if type(model).__name__ == "InstanceDependent" else None
    labels = model.apply(data.y_train, num_classes=data.num_classes, seed=job.seed, features=features)
    return labels, name, params.get("rate")


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def read_results(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_result(out: Path, record: dict) -> None:
    """Rewrite ``results.jsonl`` with ``record`` added, atomically (a crash leaves the old file)."""
    records = read_results(out) + [record]
    _atomic_write(out / "results.jsonl", lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in records)))


def _distributed() -> tuple[int, int]:
    """(rank, world size), initialising torch.distributed under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def run_job(job: Job, out: Path | None = None, progress: bool = False) -> dict:
    """Train ``job`` (resuming from ``out``'s checkpoint) and return its result record."""
    import numpy as np
    import torch

    from jal_plugins import create_loss, create_model
    from jal_plugins.engine import DeviceData, Trainer, TrainConfig, resolve_device, seeded_init, set_deterministic
    from jal_plugins.presets import preset_regularization, recipe

    rank, world = _distributed()
    rec = recipe(job.dataset)
    recipe_model, recipe_model_params = rec.pop("model", "auto"), rec.pop("model_params", {})
    recipe_preset = rec.pop("preset", None)
    model_name = job.model or recipe_model
    model_params = {**(recipe_model_params if not job.model else {}), **job.model_params}
    preset = job.preset if job.preset is not None else recipe_preset
    settings = {**rec, **preset_regularization(preset, job.loss), **job.config}
    config = TrainConfig.from_dict(settings)
    set_deterministic(config.deterministic)

    data = load_dataset(job.dataset, **job.dataset_params)
    labels, noise_name, rate = noisy_labels(job, data)
    if model_name == "auto":
        model_name, auto_params = auto_model(data.x_train.shape)
        model_params = {**auto_params, **model_params}
    in_channels = data.in_channels if data.is_image else data.x_train.shape[1]
    loss = create_loss(job.loss, data.num_classes, preset=preset, reduction="none", **job.loss_params)
    model = seeded_init(job.seed, lambda: create_model(model_name, data.num_classes, in_channels, **model_params))
    device = resolve_device(job.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    trainer = Trainer(model, loss, config, device, seed=job.seed, ddp=world > 1)

    run_dir = out / "runs" / job.slug() if out else None
    checkpoint = run_dir / "checkpoint.pt" if run_dir else None
    if checkpoint and checkpoint.is_file():
        trainer.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True))
    train = DeviceData(data.x_train, labels, device, data.mean, data.std)
    test = DeviceData(data.x_test, data.y_test, device, data.mean, data.std)
    label = f"{job.dataset} {job.noise} {job.loss} seed {job.seed}"
    seconds = sum(h.get("seconds", 0.0) for h in trainer.history)
    while trainer.epoch < config.epochs:
        start = time.perf_counter()
        stats = trainer.train_epoch(train, rank, world)
        stats["test_accuracy"] = trainer.accuracy(test)
        stats["seconds"] = time.perf_counter() - start
        seconds += stats["seconds"]
        if progress and rank == 0:
            speed = len(train) / stats["seconds"]
            print(f"\r[{label}] epoch {trainer.epoch}/{config.epochs} loss {stats['train_loss']:.4f} "
                  f"acc {stats['train_accuracy']:.1%} test {stats['test_accuracy']:.1%} {speed:,.0f} img/s",
                  end="", file=sys.stderr, flush=True)  # fmt: skip
        if run_dir and rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write(checkpoint, lambda p: torch.save(trainer.state_dict(), p))
    if progress and rank == 0:
        print(file=sys.stderr)
    if run_dir and rank == 0:
        _atomic_write(run_dir / "curve.json", lambda p: p.write_text(json.dumps(trainer.history, indent=1)))
    return {
        "dataset": job.dataset,
        "noise": job.noise,
        "noise_model": noise_name,
        "noise_rate": rate,
        "realized_noise_rate": float(np.mean(np.asarray(labels) != data.y_train)),
        "loss": job.loss,
        "method": job.method,
        "preset": preset,
        "model": model_name,
        "seed": job.seed,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "l1": config.l1,
        "test_accuracy": trainer.history[-1]["test_accuracy"],
        "train_accuracy": trainer.history[-1]["train_accuracy"],
        "seconds": seconds,
        "device": str(device),
        "world_size": world,
    }


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # tiny CPU models: one thread per process beats threads per op


def run_jobs(jobs: list[Job], out: Path | None = None, progress: bool = False, workers: int = 1) -> list[dict]:
    """Run every job not already recorded in ``out/results.jsonl``; returns all their records in order.

    ``workers > 1`` trains that many jobs at once in separate single-threaded processes (CPU).
    """
    if out:
        out.mkdir(parents=True, exist_ok=True)
    done = {"|".join(str(r[k]) for k in RESULT_KEYS): r for r in read_results(out)} if out else {}
    pending = [job for job in jobs if job.key() not in done]
    rank, _ = _distributed()

    def finish(record):
        if out and rank == 0:
            append_result(out, record)
        done["|".join(str(record[k]) for k in RESULT_KEYS)] = record

    if workers > 1 and len(pending) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(pending)), mp_context=ctx, initializer=_worker_init) as pool:
            for record in pool.map(run_job, pending, [out] * len(pending)):
                finish(record)
    else:
        for job in pending:
            finish(run_job(job, out, progress))
    return [done[job.key()] for job in jobs]


def summarize(records: list[dict], rows: str = "noise", cols: str = "loss") -> str:
    """Markdown table of test accuracy (mean ± sample std over seeds, ×100)."""
    import numpy as np

    row_keys = list(dict.fromkeys(r[rows] for r in records))
    col_keys = list(dict.fromkeys(r[cols] for r in records))
    lines = [f"| {rows} | " + " | ".join(map(str, col_keys)) + " |", "|---" * (len(col_keys) + 1) + "|"]
    for rk in row_keys:
        cells = []
        for ck in col_keys:
            acc = np.array([r["test_accuracy"] for r in records if r[rows] == rk and r[cols] == ck]) * 100
            std = acc.std(ddof=1) if acc.size > 1 else 0.0
            cells.append(f"{acc.mean():.1f} ± {std:.1f}" if acc.size else "–")
        lines.append(f"| {rk} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: list[dict], path: Path, title: str) -> Path | None:
    """Bar chart of mean test accuracy per (noise, loss); None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import numpy as np

    noises = list(dict.fromkeys(r["noise"] for r in records))
    losses = list(dict.fromkeys(r["loss"] for r in records))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(noises), 3.6))
    width = 0.8 / len(losses)
    for i, loss in enumerate(losses):
        accs = [[r["test_accuracy"] * 100 for r in records if r["noise"] == n and r["loss"] == loss] for n in noises]
        ax.bar(np.arange(len(noises)) + i * width, [np.mean(a) for a in accs], width,
               yerr=[np.std(a, ddof=1) if len(a) > 1 else 0 for a in accs], label=loss, capsize=2)  # fmt: skip
    ax.set_xticks(np.arange(len(noises)) + 0.4 - width / 2, noises)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
    return path


def _kv(text: str) -> tuple[str, object]:
    from jal_plugins.cli import parse_value

    key, eq, value = text.partition("=")
    if not eq or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key.replace("-", "_"), parse_value(value)


def cmd_run(args) -> int:
    config = dict(_kv(s) for s in args.set or [])
    for name in ("epochs", "batch_size", "lr"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    jobs = [
        Job(dataset=args.dataset, noise=noise, loss=loss, seed=seed, preset=args.preset, model=args.model,
            method=args.method, config=config, loss_params=dict(_kv(s) for s in args.loss_param or []),
            model_params=dict(_kv(s) for s in args.model_param or []),
            dataset_params=dict(_kv(s) for s in args.dataset_param or []), device=args.device)  # fmt: skip
        for noise in args.noise
        for loss in args.loss
        for seed in args.seed
    ]
    out = Path(args.out) if args.out else None
    records = run_jobs(jobs, out, progress=not args.json and sys.stderr.isatty(), workers=args.workers)
    if _distributed()[0] != 0:
        return 0
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print(summarize(records))
    return 0


# Per-sample flips: with ~130 images a class, the exact-count generator's trunc() would cut 0.4 to 0.35.
DEMO_NOISES = ("none", "symmetric:0.2,exact=false", "symmetric:0.4,exact=false")
DEMO_LOSSES = ("ce", "gce", "nce+rce", "jal-ce")


def cmd_demo(args) -> int:
    from jal_plugins.engine import resolve_device

    out = Path(args.out)
    jobs = [Job("digits", noise, loss, seed, device=args.device) for noise in DEMO_NOISES for loss in DEMO_LOSSES
            for seed in range(args.seeds)]  # fmt: skip
    start = time.perf_counter()
    workers = args.workers or (os.cpu_count() or 1 if resolve_device(args.device).type == "cpu" else 1)
    records = run_jobs(jobs, out, progress=not args.json and sys.stderr.isatty(), workers=workers)
    elapsed = time.perf_counter() - start
    chart = plot(records, out / "demo.png", "digits, symmetric label noise (cnn4, 60 epochs)")
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    print(f"Test accuracy (%) on scikit-learn digits, mean ± std over {args.seeds} seeds\n")
    print(summarize(records))
    print(f"\n{len(records)} runs in {elapsed:.0f} s; results in {out / 'results.jsonl'}")
    print(f"chart: {chart}" if chart else "chart skipped: pip install 'jal-plugins[plot]' for matplotlib")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("run", help="train dataset × noise × loss × seed and report test accuracy")
    p.add_argument("--dataset", default="digits", help="registered dataset (default: digits)")
    p.add_argument("--noise", nargs="+", default=["none"], help="SPEC: none, symmetric:0.4, asymmetric:0.4, ...")
    p.add_argument("--loss", nargs="+", default=["jal-ce"])
    p.add_argument("--preset", help="loss/regularisation preset (default: the dataset recipe's)")
    p.add_argument("--model", help="registered network (default: the dataset recipe's)")
    p.add_argument("--method", default="erm")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, nargs="+", default=[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any engine field, e.g. clip=null, l1=5e-5")
    p.add_argument("--loss-param", action="append", metavar="KEY=VALUE")
    p.add_argument("--model-param", action="append", metavar="KEY=VALUE")
    p.add_argument("--dataset-param", action="append", metavar="KEY=VALUE", help="e.g. path=data.npz")
    p.add_argument("--out", help="directory for results.jsonl, curves and checkpoints (resumable)")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.add_argument("--workers", type=int, default=1, help="train this many runs at once (CPU processes)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="CE vs GCE vs NCE+RCE vs JAL-CE on digits under symmetric noise")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="jal-demo")
    p.add_argument("--workers", type=int, help="parallel CPU processes (default: one per core on CPU)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)
