"""The host runner: trains a list of jobs, stacked where that pays, with checkpoints, resume and claims.

Compatible ``erm`` jobs (same data, network, epochs, batch size and augmentation) train as stacks of
runs in one forward/backward pass; each run keeps its own checkpoint, curve and record, exactly as a
run trained alone would, so a stack can be interrupted and resumed in any other grouping.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from jal_plugins.job import Job, prepare, validate
from jal_plugins.report import atomic_write
from jal_plugins.results import ResultStore, load_checkpoint

AUTO = "auto"


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


def _rank_device(device: str, world: int):
    """Under torchrun each rank takes the GPU of its LOCAL_RANK."""
    from jal_plugins.checks import device as resolve_device

    dev = resolve_device(device)
    if world > 1 and dev.type == "cuda":
        import torch

        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    return dev


# -- records and checkpoints ---------------------------------------------------------------------
def record(prepared, history: list[dict], info: dict, diverged=None, world: int = 1, stack_size: int = 1) -> dict:
    """The result record of a trained job."""
    import numpy as np

    job, r, data = prepared.job, prepared.resolved, prepared.data
    config = r.config
    last = history[-1] if history else {}
    out = {
        "run_id": job.key(), "status": "diverged" if diverged else "ok",
        "dataset": job.dataset, "noise": job.noise, "noise_model": prepared.noise_model,
        "noise_rate": prepared.noise_rate,
        "realized_noise_rate": float(np.mean(np.asarray(prepared.labels) != data.y_train)),
        "loss": job.loss, "loss_params": r.loss_params, "method": job.method, "method_params": job.method_params,
        "method_info": info, "preset": r.preset, "model": prepared.model, "model_params": r.model_params,
        "seed": job.seed, "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
        "weight_decay": config.weight_decay, "l1": config.l1,
        "test_accuracy": None if diverged else last.get("test_accuracy"),
        "train_accuracy": None if diverged else last.get("train_accuracy"),
        "seconds": sum(h.get("seconds", 0.0) for h in history),
        "device": str(prepared.device), "world_size": world, "stack_size": stack_size,
    }  # fmt: skip
    if diverged:
        out.update(diverged_epoch=diverged.epoch, error=str(diverged))
    return out


def _save_checkpoint(run_dir: Path, state: dict, settings: dict) -> None:
    import torch

    run_dir.mkdir(parents=True, exist_ok=True)
    state = {**state, "settings": json.loads(json.dumps(settings, default=str))}
    atomic_write(run_dir / "checkpoint.pt", lambda p: torch.save(state, p))


def _finish(store: ResultStore | None, job: Job, history: list[dict], result: dict) -> dict:
    if store is not None:
        run_dir = store.run_dir(job)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "curve.json", lambda p: p.write_text(json.dumps(history, indent=1)))
        store.add(result)
    return result


def _progress(label: str, epoch: int, epochs: int, stats: dict, images: int) -> None:
    speed = images / max(stats["seconds"], 1e-9)
    print(f"\r[{label}] epoch {epoch}/{epochs} loss {stats['train_loss']:.4f} acc {stats['train_accuracy']:.1%} "
          f"test {stats['test_accuracy']:.1%} {speed:,.0f} img/s", end="", file=sys.stderr, flush=True)  # fmt: skip


# -- one run (any method) -------------------------------------------------------------------------
def run_job(job: Job, store: ResultStore | None = None, progress: bool = False) -> dict:
    """Prepare, train (resuming from ``store``'s checkpoint) and record one canonical job, alone."""
    from jal_plugins import create_method
    from jal_plugins.engine import DeviceData, Diverged

    rank, world = distributed()
    prepared = prepare(job, device=_rank_device(job.device, world), ddp=world > 1)
    data, settings = prepared.data, job.settings()
    learner = create_method(job.method, prepared.context, **job.method_params)
    run_dir = store.run_dir(job) if store else None
    if run_dir is not None:
        state = load_checkpoint(run_dir / "checkpoint.pt", settings, prepared.device)
        if state is not None:
            learner.load_state_dict(state)
    train = DeviceData(data.x_train, prepared.labels, prepared.device, data.mean, data.std)
    test = DeviceData(data.x_test, data.y_test, prepared.device, data.mean, data.std)
    diverged = None
    while learner.epoch < learner.epochs:
        start = time.perf_counter()
        try:
            stats = learner.train_epoch(train, rank, world)
        except Diverged as exc:
            diverged = exc
            break
        stats["test_accuracy"] = learner.accuracy(test)
        stats["seconds"] = time.perf_counter() - start
        if progress and rank == 0:
            _progress(job.label(), learner.epoch, learner.epochs, stats, len(train))
        if run_dir is not None and rank == 0:
            _save_checkpoint(run_dir, learner.state_dict(), settings)
    if progress and rank == 0:
        print(file=sys.stderr)
    result = record(prepared, learner.history, learner.info() if hasattr(learner, "info") else {}, diverged, world)
    return _finish(store if rank == 0 else None, job, learner.history, result)


# -- a stack of erm runs ------------------------------------------------------------------------
def run_stack(jobs: list[Job], store: ResultStore | None = None, progress: bool = False) -> list[dict]:
    """Train ``jobs`` (compatible, canonical ``erm`` jobs) as one stack; resume each from its checkpoint."""
    import torch

    from jal_plugins.engine import DeviceData, Stack

    prepared = [prepare(job) for job in jobs]
    first = prepared[0]
    device, data = first.device, first.data
    settings = [p.job.settings() for p in prepared]
    states = [load_checkpoint(store.run_dir(p.job) / "checkpoint.pt", s, device) if store else None
              for p, s in zip(prepared, settings)]  # fmt: skip
    epochs = {0 if s is None else s["epoch"] for s in states}
    if len(epochs) > 1:  # runs interrupted at different epochs resume in separate stacks
        by_epoch: dict[int, list[Job]] = {}
        for job, state in zip(jobs, states):
            by_epoch.setdefault(0 if state is None else state["epoch"], []).append(job)
        return [r for group in by_epoch.values() for r in run_stack(group, store, progress)]
    models, losses, configs, seeds = zip(*[p.context.parts() for p in prepared])
    stack = Stack(models, losses, configs, seeds, device, input_shape=data.input_shape)
    stack.load_states(states)
    labels = torch.stack([torch.as_tensor(p.labels, dtype=torch.long) for p in prepared]).to(device)
    train = DeviceData(data.x_train, data.y_train, device, data.mean, data.std)
    test = DeviceData(data.x_test, data.y_test, device, data.mean, data.std)
    label = f"{len(jobs)} runs: {first.job.dataset} {first.model}"
    while stack.epoch < stack.epochs:
        start = time.perf_counter()
        epoch_stats = stack.train_epoch(train, labels)
        accuracies = stack.accuracies(test)
        seconds = (time.perf_counter() - start) / stack.runs  # each run's share of the stack's time
        for stats, accuracy in zip(epoch_stats, accuracies):
            if stats is not None:
                stats.update(test_accuracy=accuracy, seconds=seconds)
        if store is not None:
            for r, p in enumerate(prepared):
                _save_checkpoint(store.run_dir(p.job), stack.run_state(r), settings[r])
        live = [s for s in epoch_stats if s is not None]
        if progress and live:
            mean = {k: sum(s[k] for s in live) / len(live) for k in ("train_loss", "train_accuracy", "test_accuracy")}
            _progress(label, stack.epoch, stack.epochs, {**mean, "seconds": seconds * stack.runs}, len(train) * stack.runs)
    if progress:
        print(file=sys.stderr)
    results = []
    for r, p in enumerate(prepared):
        result = record(p, stack.histories[r], {}, stack.diverged[r], stack_size=stack.runs)
        results.append(_finish(store, p.job, stack.histories[r], result))
    return results


# -- planning -----------------------------------------------------------------------------------
def stack_key(job: Job) -> tuple | None:
    """What runs must share to train in one stack (None: this job trains alone)."""
    from jal_plugins.selection import wants_selection

    if job.method != "erm" or wants_selection(job.loss_params):  # a=auto stacks its own candidates
        return None
    r = job.resolved()
    config = asdict(r.config)
    shared = tuple(config[k] for k in ("epochs", "batch_size", "augment", "eval_batch_size", "amp", "deterministic"))
    return (job.dataset, json.dumps(job.dataset_params, sort_keys=True), r.model,
            json.dumps(r.model_params, sort_keys=True), job.device, shared)  # fmt: skip


def _probe_factories(job: Job):
    """(one run's parts, one batch of prepared inputs) for timing ``job``'s network."""
    from jal_plugins.engine import DeviceData

    prepared = prepare(job)
    data, device = prepared.data, prepared.device
    batch = prepared.resolved.config.batch_size

    def inputs():
        view = DeviceData(data.x_train[:batch], data.y_train[:batch], device, data.mean, data.std)
        return view.prepare(view.x) if view.images else view.x

    return prepared.context.parts, inputs, device, data.input_shape


def stack_plan(jobs: list[Job], stack, workers: int = 1, log=None) -> list[list[Job]]:
    """``jobs`` as units of work: stacks of compatible ``erm`` runs, and single runs."""
    from jal_plugins.autostack import bytes_per_run, choose_stack_size, chunks, max_fitting

    groups: dict[tuple, list[Job]] = {}
    units: list[list[Job]] = []
    for job in jobs:
        key = stack_key(job) if stack != 1 and distributed()[1] == 1 else None
        if key is None:
            units.append([job])
        else:
            groups.setdefault(key, []).append(job)
    for key, group in groups.items():
        # runs with one loss side by side: each stack then calls few losses, on views
        group.sort(key=lambda j: (j.loss, json.dumps(j.loss_params, sort_keys=True)))
        if len(group) == 1:
            size = 1
        elif stack == AUTO:
            parts, inputs, device, shape = _probe_factories(group[0])
            size = choose_stack_size(key, parts, inputs, len(group), device, shape, 1 if workers > 1 else None)
            if log:
                log(f"--stack auto: {size} run(s) at a time for {len(group)} {group[0].dataset} runs (measured)")
        else:
            size = min(stack, len(group))
            parts, inputs, device, _ = _probe_factories(group[0])
            need = bytes_per_run(parts(), inputs())
            fit = max_fitting(need, device)
            if size > fit:
                raise ValueError(
                    f"--stack {stack}: {size} runs of {group[0].resolved().model} need about {size * need / 2**30:.1f} GiB, "
                    f"more than {device} has free; use --stack {fit} or less"
                )
        units += [u for u in chunks(group, size, workers)]
    return units


# -- execution ------------------------------------------------------------------------------------
def train_unit(jobs: list[Job], out: Path | None = None, progress: bool = False) -> dict[str, dict | None]:
    """Train the runs of one unit that no other process holds; None for those another process holds.

    The worker-process entry point: claims are taken (and released) in the process that trains.
    """
    store = ResultStore(out) if out else None
    claims_needed = store is not None and distributed()[1] == 1  # torchrun ranks train one run together
    results: dict[str, dict | None] = {}
    with contextlib.ExitStack() as held:
        mine = []
        for job in jobs:
            if claims_needed and not held.enter_context(store.claim(job.key())):
                results[job.key()] = None
                continue
            done = store.records().get(job.key()) if store else None
            if done:
                results[job.key()] = done
            else:
                mine.append(job)
        if len(jobs) == 1 and mine:
            results[mine[0].key()] = run_job(mine[0], store, progress)
        elif mine:
            for job, result in zip(mine, run_stack(mine, store, progress)):
                results[job.key()] = result
    return results


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # small CPU models: one thread per process beats threads per op


def _warm() -> None:
    """Import what training needs, so a worker is ready by the time work arrives."""
    import sklearn.model_selection  # noqa: F401 - the digits split
    import torch  # noqa: F401

    import jal_plugins.engine  # noqa: F401
    from jal_plugins.plugins import host

    host().load()


class Workers:
    """This process and ``count - 1`` spawned single-threaded ones, training units of work together.

    The spawned processes start (and import) at once, while this one plans; this one, already warm,
    trains too. Units are handed out one at a time, so no process idles while work is left.
    """

    def __init__(self, count: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.count = count
        ctx = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(count - 1, mp_context=ctx, initializer=_worker_init)
        for _ in range(count - 1):
            self.pool.submit(_warm)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(cancel_futures=True)

    def train(self, units: list[list[Job]], out: Path | None, progress: bool) -> dict:
        import threading
        from collections import deque

        import torch

        queue, results, errors = deque(units), {}, []
        outstanding = [0]  # units the spawned processes hold
        lock = threading.Condition()

        def take():
            with lock:
                return queue.popleft() if queue and not errors else None

        def feed():
            with lock:
                if not queue or errors:
                    return
                unit = queue.popleft()
                outstanding[0] += 1
            self.pool.submit(train_unit, unit, out).add_done_callback(collect)

        def collect(future):
            with lock:
                if future.exception() is not None:
                    errors.append(future.exception())
                else:
                    results.update(future.result())
                outstanding[0] -= 1
                lock.notify_all()
            feed()

        for _ in range(self.count - 1):
            feed()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            while (unit := take()) is not None:
                done = train_unit(unit, out, progress)
                with lock:
                    results.update(done)
        finally:
            torch.set_num_threads(threads)
        with lock:  # the spawned processes finish what they hold
            lock.wait_for(lambda: outstanding[0] == 0)
        if errors:
            raise errors[0]
        return results


def run_jobs(jobs: list[Job], out: Path | None = None, progress: bool = False, workers: int = 1,
             stack=AUTO, log=None) -> list[dict]:  # fmt: skip
    """Train every job not yet recorded in ``out``; return the records of all of them, in order.

    Compatible ``erm`` jobs train as stacks (``stack``: a size, or ``"auto"`` to measure the best;
    1 trains every run alone). ``workers > 1`` trains that many units (stacks or single runs) at
    once in single-threaded processes. Runs another process holds (a second command on the same
    ``out``) are waited for, not trained twice.
    """
    jobs = plan(jobs, log)
    store = ResultStore(out) if out else None
    done = store.records() if store else {}
    pending = [job for job in jobs if job.key() not in done]
    with Workers(workers) if workers > 1 and len(pending) > 1 else contextlib.nullcontext() as pool:
        units = stack_plan(pending, stack, workers, log)
        results: dict[str, dict | None] = {}
        if pool is not None and len(units) > 1:
            results = pool.train(units, out, progress)
        else:
            for unit in units:
                results.update(train_unit(unit, out, progress))
    for job in pending:  # held by another process: wait for it, then train it only if it never finished
        if results[job.key()] is None:
            with store.claim(job.key(), wait=True):
                results[job.key()] = store.records().get(job.key()) or run_job(job, store, progress)
    done.update(results)
    return [done[job.key()] for job in jobs]
