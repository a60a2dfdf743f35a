"""The host runner: trains a list of jobs, stacked where that pays, with checkpoints, resume and claims.

Compatible ``erm`` jobs (same data, network, epochs, batch size and augmentation) train as stacks of
runs in one forward/backward pass; each run keeps its own checkpoint, curve and record, exactly as a
run trained alone would, so a stack can be interrupted and resumed in any other grouping.

A stack or a single run is a unit of work (``train_unit``: claim, train, record); an executor
(``jal_plugins.executors``) decides where units train: this machine's processes, or a Ray cluster.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from jal_plugins import curves
from jal_plugins.job import Job, prepare, validate
from jal_plugins.report import atomic_write
from jal_plugins.results import ResultStore, load_checkpoint, save_checkpoint

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


def _write_curve(store: ResultStore | None, job: Job, history: list[dict]) -> None:
    if store is not None:
        run_dir = store.run_dir(job)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "curve.json", lambda p: p.write_text(json.dumps(history, indent=1)))


def _progress(label: str, epoch: int, epochs: int, stats: dict, images: int) -> None:
    speed = images / max(stats["seconds"], 1e-9)
    test = "–" if stats["test_accuracy"] is None else f"{stats['test_accuracy']:.1%}"  # none while a selection trains
    print(f"\r[{label}] epoch {epoch}/{epochs} loss {stats['train_loss']:.4f} acc {stats['train_accuracy']:.1%} "
          f"test {test} {speed:,.0f} img/s", end="", file=sys.stderr, flush=True)  # fmt: skip


# -- one run (any method) -------------------------------------------------------------------------
def run_job(job: Job, store: ResultStore | None = None, progress: bool = False, tensorboard: bool = False) -> dict:
    """Prepare and train one canonical job alone, resuming from ``store``'s checkpoint; its record.

    A checkpoint (and TensorBoard scalars, with ``tensorboard``) is written after every epoch, the
    curve at the end; the record is returned, not written (``train_unit`` writes it).
    """
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
    with curves.boards(store, [job], [learner.history], tensorboard and rank == 0) as (board,):
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
            if board is not None:
                board.add(learner.epoch, stats)
            if run_dir is not None and rank == 0:
                save_checkpoint(run_dir / "checkpoint.pt", learner.state_dict(), settings)
    if progress and rank == 0:
        print(file=sys.stderr)
    if rank == 0:
        _write_curve(store, job, learner.history)
    return record(prepared, learner.history, learner.info() if hasattr(learner, "info") else {}, diverged, world)


# -- a stack of erm runs, or of selections ------------------------------------------------------
def _unit_trainer(prepared: list):
    """The runs of ``prepared`` as one trainer with a ``Stack``'s interface: a stack of erm runs, or
    their ``a="auto"`` selections (every run's candidates stacked, then the winners)."""
    from jal_plugins.engine import Stack
    from jal_plugins.selection import Selections, candidates, wants_selection

    contexts = [p.context for p in prepared]
    if wants_selection(prepared[0].job.loss_params):
        return Selections(contexts, [candidates(c.loss_params, c.config_changes) for c in contexts])
    models, losses, configs, seeds = zip(*[c.parts() for c in contexts])
    return Stack(models, losses, configs, seeds, prepared[0].device, input_shape=prepared[0].data.input_shape)


def run_stack(jobs: list[Job], store: ResultStore | None = None, progress: bool = False,
              tensorboard: bool = False) -> list[dict]:  # fmt: skip
    """Train ``jobs`` (compatible, canonical ``erm`` jobs) as one stack, resuming each from its
    checkpoint; their records (in any order: runs interrupted at different epochs resume apart)."""
    import torch

    from jal_plugins.engine import DeviceData

    prepared = [prepare(job) for job in jobs]
    first = prepared[0]
    device, data = first.device, first.data
    settings = [p.job.settings() for p in prepared]
    paths = [store.run_dir(p.job) / "checkpoint.pt" for p in prepared] if store else None
    states = [load_checkpoint(path, s, device) for path, s in zip(paths, settings)] if store else [None] * len(jobs)
    epochs = {0 if s is None else s["epoch"] for s in states}
    if len(epochs) > 1:  # runs interrupted at different epochs resume in separate stacks
        by_epoch: dict[int, list[Job]] = {}
        for job, state in zip(jobs, states):
            by_epoch.setdefault(0 if state is None else state["epoch"], []).append(job)
        return [r for group in by_epoch.values() for r in run_stack(group, store, progress, tensorboard)]
    stack = _unit_trainer(prepared)
    stack.load_states(states)
    labels = torch.stack([torch.as_tensor(p.labels, dtype=torch.long) for p in prepared]).to(device)
    train = DeviceData(data.x_train, data.y_train, device, data.mean, data.std)
    test = DeviceData(data.x_test, data.y_test, device, data.mean, data.std)
    label = f"{len(jobs)} runs: {first.job.dataset} {first.model}"
    with curves.boards(store, jobs, stack.histories, tensorboard) as boards:
        while stack.epoch < stack.epochs:
            start = time.perf_counter()
            epoch_stats = stack.train_epoch(train, labels)
            accuracies = stack.accuracies(test)
            seconds = (time.perf_counter() - start) / stack.runs  # each run's share of the stack's time
            for stats, accuracy, board in zip(epoch_stats, accuracies, boards):
                if stats is not None:
                    stats.update(test_accuracy=accuracy, seconds=seconds)
                    if board is not None:
                        board.add(stack.epoch, stats)
            if store is not None:
                for path, state, setting in zip(paths, stack.run_states(), settings):
                    save_checkpoint(path, state, setting)
            live = [s for s in epoch_stats if s is not None]
            if progress and live:
                mean = {k: _mean([s[k] for s in live]) for k in ("train_loss", "train_accuracy", "test_accuracy")}
                _progress(label, stack.epoch, stack.epochs, {**mean, "seconds": seconds * stack.runs}, len(train) * stack.runs)
    if progress:
        print(file=sys.stderr)
    results = []
    for r, p in enumerate(prepared):
        _write_curve(store, p.job, stack.histories[r])
        info = stack.info(r) if hasattr(stack, "info") else {}
        results.append(record(p, stack.histories[r], info, stack.diverged[r], stack_size=stack.runs))
    return results


def _mean(values: list):
    """The mean of the numbers in ``values``; None when there are none (test accuracy while a selection trains)."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# -- planning -----------------------------------------------------------------------------------
def stack_key(job: Job) -> tuple | None:
    """What runs must share to train in one stack (None: this job trains alone)."""
    from jal_plugins.engine import SHARED
    from jal_plugins.selection import wants_selection

    if job.method != "erm":
        return None
    r = job.resolved()
    config = asdict(r.config)
    shared = tuple(config[k] for k in SHARED)
    return (job.dataset, json.dumps(job.dataset_params, sort_keys=True), r.model,
            json.dumps(r.model_params, sort_keys=True), job.device, shared, wants_selection(job.loss_params))  # fmt: skip


def _probe_factories(job: Job):
    """(one run's parts, one batch of prepared inputs) for timing ``job``'s network."""
    from jal_plugins.engine import DeviceData
    from jal_plugins.selection import candidates, wants_selection

    prepared = prepare(job)
    data, device, context = prepared.data, prepared.device, prepared.context
    batch = prepared.resolved.config.batch_size
    if wants_selection(context.loss_params):  # a selection trains its candidates: time the first
        first = candidates(context.loss_params, context.config_changes)[0]
        context = context.vary(first["loss_params"], first["config"])

    def inputs():
        view = DeviceData(data.x_train[:batch], data.y_train[:batch], device, data.mean, data.std)
        return view.prepare(view.x) if view.images else view.x

    return context.parts, inputs, device, data.input_shape


def stack_plan(jobs: list[Job], stack, workers: int = 1, log=None) -> list[list[Job]]:
    """``jobs`` as units of work: stacks of compatible ``erm`` runs, and single runs."""
    from jal_plugins.autostack import bytes_per_run, choose_stack_size, chunks, max_fitting, stackable
    from jal_plugins.selection import candidates, networks

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
        elif key[-1] and stack == AUTO:  # selections: a unit per worker, each stacking its candidates
            parts, inputs, device, _ = _probe_factories(group[0])  # itself, as many as memory holds
            trained = networks(len(candidates(group[0].loss_params, {})))  # per selection, every fold's
            size = min(len(group), max_fitting(bytes_per_run(parts(), inputs()) * trained, device))
        elif stack == AUTO:
            parts, inputs, device, shape = _probe_factories(group[0])
            size = choose_stack_size(key, parts, inputs, len(group), device, shape, 1 if workers > 1 else None)
            if log:
                log(f"--stack auto: {size} run(s) at a time for {len(group)} {group[0].dataset} runs (measured)")
        else:
            size = min(stack, len(group))
            parts, inputs, device, shape = _probe_factories(group[0])
            if not key[-1] and not stackable(parts, device, shape):
                if log:
                    log(f"--stack {stack}: {group[0].resolved().model} does not stack; its runs train one at a time")
                units += [[job] for job in group]
                continue
            need = bytes_per_run(parts(), inputs())
            fit = max_fitting(need, device)
            if size > fit:
                raise ValueError(
                    f"--stack {stack}: {size} runs of {group[0].resolved().model} need about {size * need / 2**30:.1f} GiB, "
                    f"more than {device} has free; use --stack {fit} or less"
                )
        units += [u for u in chunks(group, size, workers)]
    return sorted(units, key=_runs_trained, reverse=True)  # the longest first: no process is left with one at the end


def _runs_trained(unit: list[Job]) -> float:
    """About how many runs' worth of training ``unit`` is (a selection trains candidates, then its winner)."""
    from jal_plugins.selection import candidates, wants_selection, work

    return sum(work(len(candidates(job.loss_params, {}))) if wants_selection(job.loss_params) else 1 for job in unit)


def plan_units(jobs: list[Job], stack, slots: int) -> tuple[list[list[int]], list[str]]:
    """``stack_plan`` where the units will train: units as positions in ``jobs``, and its log lines.

    Positions, so the caller keeps its own jobs (a Ray task sees them with the device it was given).
    """
    notes: list[str] = []
    units = stack_plan(jobs, stack, slots, notes.append)
    position = {id(job): i for i, job in enumerate(jobs)}
    return [[position[id(job)] for job in unit] for unit in units], notes


# -- execution ------------------------------------------------------------------------------------
def train_runs(jobs: list[Job], out: Path | None = None, progress: bool = False,
               tensorboard: bool = False) -> list[dict]:  # fmt: skip
    """Train one unit here (a run, or a stack of compatible ``erm`` runs) with a checkpoint every epoch
    under ``out``, resuming from the last; the records, which the caller writes."""
    store = ResultStore(out) if out else None
    progress = progress and multiprocessing.parent_process() is None  # spawned workers stay quiet
    if len(jobs) == 1:
        return [run_job(jobs[0], store, progress, tensorboard)]
    return run_stack(jobs, store, progress, tensorboard)


def train_unit(jobs: list[Job], out: Path | None = None, progress: bool = False, tensorboard: bool = False,
               trainer=None, wait: bool = False) -> dict[str, dict | None]:  # fmt: skip
    """The unit of work of every executor: claim the runs of ``jobs``, train them, record them.

    Runs another process holds are None (with ``wait``, waited for instead); recorded runs are
    returned as recorded. ``trainer(jobs, out, progress, tensorboard) -> records`` trains the rest:
    ``train_runs`` here by default, or as a Ray task. Claims are held, and records written, by the
    process that calls this, for as long as the training takes.
    """
    store = ResultStore(out) if out else None
    rank, world = distributed()
    claims = store is not None and world == 1  # torchrun ranks train one run together
    with contextlib.ExitStack() as held:
        free = [job for job in jobs if not claims or held.enter_context(store.claim(job.key(), wait=wait))]
        results: dict[str, dict | None] = {job.key(): None for job in jobs}
        recorded = store.records() if store else {}
        mine = [job for job in free if job.key() not in recorded]
        results.update({job.key(): recorded[job.key()] for job in free if job.key() in recorded})
        for result in (trainer or train_runs)(mine, out, progress, tensorboard) if mine else []:
            if store is not None and rank == 0:
                store.add(result)
            results[result["run_id"]] = result
    return results


def run_jobs(jobs: list[Job], out: Path | None = None, progress: bool = False, workers: int | None = 1,
             stack=AUTO, log=None, executor: str = "local", address: str | None = None,
             tensorboard: bool = False) -> list[dict]:  # fmt: skip
    """Train every job not yet recorded in ``out``; return the records of all of them, in order.

    Compatible ``erm`` jobs train as stacks (``stack``: a size, or ``"auto"`` to measure the best;
    1 trains every run alone), and each stack or single run is a unit of work (``train_unit``).
    ``executor="local"`` trains ``workers`` units at once on this machine; ``"ray"`` sends each unit
    to the Ray cluster at ``address`` as a task, ``workers`` (default: the cluster's CPUs or GPUs)
    at once (``jal_plugins.executors``). Runs another process holds (a second command on the same
    ``out``) are waited for, not trained twice. ``tensorboard`` writes every run's scalars under
    ``out/tensorboard``.
    """
    from jal_plugins import executors

    executors.check(executor, address)
    if tensorboard:
        curves.require(out)
    jobs = plan(jobs, log)
    out = Path(out).resolve() if out else None  # the same folder for processes in other folders, or on other nodes
    store = ResultStore(out) if out else None
    done = store.records() if store else {}
    pending = [job for job in jobs if job.key() not in done]
    if pending:
        with executors.create(executor, workers, address, pending, out, log, progress) as ex:
            positions, notes = ex.remote(plan_units)(pending, stack, ex.slots)
            for note in notes if log else []:
                log(note)
            train = functools.partial(train_unit, out=out, progress=progress and ex.local, tensorboard=tensorboard,
                                      trainer=ex.remote(train_runs))  # fmt: skip
            results: dict[str, dict | None] = {}
            for part in ex.map(train, [[pending[i] for i in unit] for unit in positions]):
                results.update(part)
            for job in pending:  # held by another process: wait for it, then train it only if it never finished
                if results[job.key()] is None:
                    results.update(train([job], wait=True))
        done.update(results)
    return [done[job.key()] for job in jobs]
