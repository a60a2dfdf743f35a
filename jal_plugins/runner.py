"""The host runner: trains a list of jobs with checkpoints, resume, claims and atomic results."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from jal_plugins.job import Job, prepare, validate
from jal_plugins.report import atomic_write
from jal_plugins.results import ResultStore, load_checkpoint


def plan(jobs: list[Job], log=None) -> list[Job]:
    """Canonical, validated jobs with duplicates dropped (``log`` is told how many)."""
    unique = {}
    for job in jobs:
        job = validate(job)
        unique.setdefault(job.key(), job)
    dropped = len(jobs) - len(unique)
    if dropped and log:
        log(f"dropped {dropped} duplicate run(s): the same settings were asked for more than once")
    return list(unique.values())


def distributed() -> tuple[int, int]:
    """(rank, world size), initialising torch.distributed under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _progress(label: str, learner, stats: dict, images: int) -> None:
    speed = images / max(stats["seconds"], 1e-9)
    print(f"\r[{label}] epoch {learner.epoch}/{learner.epochs} loss {stats['train_loss']:.4f} "
          f"acc {stats['train_accuracy']:.1%} test {stats['test_accuracy']:.1%} {speed:,.0f} img/s",
          end="", file=sys.stderr, flush=True)  # fmt: skip


def train(prepared, run_dir: Path | None = None, progress: bool = False) -> tuple[object, str | None]:
    """Train a prepared job to its last epoch, resuming from ``run_dir``'s checkpoint.

    Returns the learner and, when the loss stopped being finite, the Diverged message.
    """
    import torch

    from jal_plugins import create_method
    from jal_plugins.engine import DeviceData, Diverged

    job, data = prepared.job, prepared.data
    rank, world = distributed()
    learner = create_method(job.method, prepared.context, **job.method_params)
    settings = job.settings()
    checkpoint = run_dir / "checkpoint.pt" if run_dir else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint, settings, prepared.device)
        if state is not None:
            learner.load_state_dict(state)
    train_data = DeviceData(data.x_train, prepared.labels, prepared.device, data.mean, data.std)
    test = DeviceData(data.x_test, data.y_test, prepared.device, data.mean, data.std)
    while learner.epoch < learner.epochs:
        start = time.perf_counter()
        try:
            stats = learner.train_epoch(train_data, rank, world)
        except Diverged as exc:
            return learner, exc
        stats["test_accuracy"] = learner.accuracy(test)
        stats["seconds"] = time.perf_counter() - start
        if progress and rank == 0:
            _progress(job.label(), learner, stats, len(train_data))
        if checkpoint is not None and rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            state = {**learner.state_dict(), "settings": json.loads(json.dumps(settings, default=str))}
            atomic_write(checkpoint, lambda p: torch.save(state, p))
    if progress and rank == 0:
        print(file=sys.stderr)
    return learner, None


def record(prepared, learner, diverged=None, world: int = 1) -> dict:
    """The result record of a trained job."""
    import numpy as np

    job, r, data = prepared.job, prepared.resolved, prepared.data
    config = r.config
    last = learner.history[-1] if learner.history else {}
    out = {
        "run_id": job.key(), "status": "diverged" if diverged else "ok",
        "dataset": job.dataset, "noise": job.noise, "noise_model": prepared.noise_model,
        "noise_rate": prepared.noise_rate,
        "realized_noise_rate": float(np.mean(np.asarray(prepared.labels) != data.y_train)),
        "loss": job.loss, "loss_params": r.loss_params, "method": job.method, "method_params": job.method_params,
        "method_info": learner.info() if hasattr(learner, "info") else {}, "preset": r.preset,
        "model": prepared.model, "model_params": r.model_params, "seed": job.seed, "epochs": config.epochs,
        "batch_size": config.batch_size, "lr": config.lr, "weight_decay": config.weight_decay, "l1": config.l1,
        "test_accuracy": None if diverged else last.get("test_accuracy"),
        "train_accuracy": None if diverged else last.get("train_accuracy"),
        "seconds": sum(h.get("seconds", 0.0) for h in learner.history),
        "device": str(prepared.device), "world_size": world,
    }  # fmt: skip
    if diverged:
        out.update(diverged_epoch=diverged.epoch, error=str(diverged))
    return out


def run_job(job: Job, store: ResultStore | None = None, progress: bool = False) -> dict:
    """Prepare, train (resuming from ``store``'s checkpoint) and record one canonical job."""
    rank, world = distributed()
    prepared = prepare(job, device=_rank_device(job.device, world), ddp=world > 1)
    run_dir = store.run_dir(job) if store else None
    learner, diverged = train(prepared, run_dir, progress)
    result = record(prepared, learner, diverged, world)
    if run_dir is not None and rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "curve.json", lambda p: p.write_text(json.dumps(learner.history, indent=1)))
        store.add(result)
    return result


def _rank_device(device: str, world: int):
    """Under torchrun each rank takes the GPU of its LOCAL_RANK."""
    from jal_plugins.checks import device as resolve_device

    dev = resolve_device(device)
    if world > 1 and dev.type == "cuda":
        import torch

        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    return dev


def _claimed_run(job: Job, out: Path | None, progress: bool = False) -> dict | None:
    """Train ``job`` if no other process holds it; None when one does (a worker-process entry point)."""
    store = ResultStore(out) if out else None
    if store is None or distributed()[1] > 1:  # the ranks of one torchrun train the same run together
        return run_job(job, store, progress)
    with store.claim(job.key()) as mine:
        if not mine:
            return None
        done = store.records().get(job.key())
        return done or run_job(job, store, progress)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # tiny CPU models: one thread per process beats threads per op


def run_jobs(jobs: list[Job], out: Path | None = None, progress: bool = False, workers: int = 1, log=None) -> list[dict]:
    """Train every job not yet recorded in ``out``; return the records of all of them, in order.

    ``workers > 1`` trains that many jobs at once in separate single-threaded processes (CPU). Runs
    another process holds (a second command on the same ``out``) are waited for, not trained twice.
    """
    jobs = plan(jobs, log)
    store = ResultStore(out) if out else None
    done = store.records() if store else {}
    pending = [job for job in jobs if job.key() not in done]
    results: dict[str, dict | None] = {}
    if workers > 1 and len(pending) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(pending)), mp_context=ctx, initializer=_worker_init) as pool:
            for job, result in zip(pending, pool.map(_claimed_run, pending, [out] * len(pending))):
                results[job.key()] = result
    else:
        for job in pending:
            results[job.key()] = _claimed_run(job, out, progress)
    for job in pending:  # held by another process: wait for it, then train it only if it never finished
        if results[job.key()] is None:
            with store.claim(job.key(), wait=True):
                results[job.key()] = store.records().get(job.key()) or run_job(job, store, progress)
    done.update(results)
    return [done[job.key()] for job in jobs]
