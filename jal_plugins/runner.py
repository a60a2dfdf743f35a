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

from jal_plugins.cli import parse_kv
from jal_plugins.report import atomic_write, bar_chart, matrix

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
    method_params: dict = field(default_factory=dict)
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


def read_results(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_result(out: Path, record: dict) -> None:
    """Rewrite ``results.jsonl`` with ``record`` added, atomically (a crash leaves the old file)."""
    records = read_results(out) + [record]
    atomic_write(out / "results.jsonl", lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in records)))


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

    from jal_plugins import create_loss, create_method, create_model
    from jal_plugins.engine import DeviceData, TrainConfig, resolve_device, set_deterministic
    from jal_plugins.methods import MethodContext
    from jal_plugins.presets import preset_regularization, recipe

    rank, world = _distributed()
    rec = recipe(job.dataset)
    recipe_model, recipe_model_params = rec.pop("model", "auto"), rec.pop("model_params", {})
    recipe_preset = rec.pop("preset", None)
    model_name = job.model or recipe_model
    model_params = {**(recipe_model_params if not job.model else {}), **job.model_params}
    preset = job.preset if job.preset is not None else recipe_preset

    def build_config(loss_name: str) -> TrainConfig:
        return TrainConfig.from_dict({**rec, **preset_regularization(preset, loss_name), **job.config})

    def build_loss(loss_name: str):
        params = job.loss_params if loss_name == job.loss else {}
        return create_loss(loss_name, data.num_classes, preset=preset, reduction="none", **params)

    config = build_config(job.loss)
    set_deterministic(config.deterministic)
    data = load_dataset(job.dataset, **job.dataset_params)
    labels, noise_name, rate = noisy_labels(job, data)
    if model_name == "auto":
        model_name, auto_params = auto_model(data.x_train.shape)
        model_params = {**auto_params, **model_params}
    in_channels = data.in_channels if data.is_image else data.x_train.shape[1]
    device = resolve_device(job.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    context = MethodContext(
        job.loss, data.num_classes, device, job.seed,
        build_model=lambda: create_model(model_name, data.num_classes, in_channels, **model_params),
        build_loss=build_loss, build_config=build_config, noise_rate=rate, ddp=world > 1,
    )  # fmt: skip
    learner = create_method(job.method, context, **job.method_params)

    run_dir = out / "runs" / job.slug() if out else None
    checkpoint = run_dir / "checkpoint.pt" if run_dir else None
    if checkpoint and checkpoint.is_file():
        learner.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True))
    train = DeviceData(data.x_train, labels, device, data.mean, data.std)
    test = DeviceData(data.x_test, data.y_test, device, data.mean, data.std)
    label = f"{job.dataset} {job.noise} {job.method} {job.loss} seed {job.seed}"
    seconds = sum(h.get("seconds", 0.0) for h in learner.history)
    while learner.epoch < learner.epochs:
        start = time.perf_counter()
        stats = learner.train_epoch(train, rank, world)
        stats["test_accuracy"] = learner.accuracy(test)
        stats["seconds"] = time.perf_counter() - start
        seconds += stats["seconds"]
        if progress and rank == 0:
            speed = len(train) / stats["seconds"]
            print(f"\r[{label}] epoch {learner.epoch}/{learner.epochs} loss {stats['train_loss']:.4f} "
                  f"acc {stats['train_accuracy']:.1%} test {stats['test_accuracy']:.1%} {speed:,.0f} img/s",
                  end="", file=sys.stderr, flush=True)  # fmt: skip
        if run_dir and rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(checkpoint, lambda p: torch.save(learner.state_dict(), p))
    if progress and rank == 0:
        print(file=sys.stderr)
    if run_dir and rank == 0:
        atomic_write(run_dir / "curve.json", lambda p: p.write_text(json.dumps(learner.history, indent=1)))
    return {
        "dataset": job.dataset,
        "noise": job.noise,
        "noise_model": noise_name,
        "noise_rate": rate,
        "realized_noise_rate": float(np.mean(np.asarray(labels) != data.y_train)),
        "loss": job.loss,
        "method": job.method,
        "method_params": job.method_params,
        "method_info": learner.info() if hasattr(learner, "info") else {},
        "preset": preset,
        "model": model_name,
        "seed": job.seed,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "weight_decay": config.weight_decay,
        "l1": config.l1,
        "test_accuracy": learner.history[-1]["test_accuracy"],
        "train_accuracy": learner.history[-1]["train_accuracy"],
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


# --X-param KEY=VALUE options -> the Job field that collects them
PARAM_OPTIONS = {"loss_param": "loss_params", "model_param": "model_params", "dataset_param": "dataset_params",
                 "method_param": "method_params"}  # fmt: skip


def cmd_run(args) -> int:
    config = dict(parse_kv(s) for s in args.set or [])
    for name in ("epochs", "batch_size", "lr"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    params = {field: dict(parse_kv(s) for s in getattr(args, option) or []) for option, field in PARAM_OPTIONS.items()}
    jobs = [
        Job(dataset=args.dataset, noise=noise, loss=loss, seed=seed, preset=args.preset, model=args.model,
            method=method, config=config, device=args.device, **params)  # fmt: skip
        for noise in args.noise
        for method in args.method
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
        print(matrix(records, cols=("method", "loss") if len(args.method) > 1 else ("loss",)))
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
    chart = bar_chart(records, ("noise",), ("loss",), out / "demo.png", "digits, symmetric label noise (cnn4, 60 epochs)")
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    print(f"Test accuracy (%) on scikit-learn digits, mean ± std over {args.seeds} seeds\n")
    print(matrix(records))
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
    p.add_argument("--method", nargs="+", default=["erm"], help="training method: erm, co-teaching, cleanlab-prune, ...")
    p.add_argument("--method-param", action="append", metavar="KEY=VALUE", help="e.g. forget_rate=0.4, folds=4")
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
