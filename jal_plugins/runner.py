"""The host runner: trains a list of jobs, stacked where that pays, with checkpoints, resume and claims.

Compatible ``erm`` jobs (same data, network, epochs, batch size and augmentation) train as stacks of
runs in one forward/backward pass; each run keeps its own checkpoint, curve and record, exactly as a
run trained alone would, so a stack can be interrupted and resumed in any other grouping.

A stack or a single run is a unit of work (``train_unit``: claim, train, record), trained by
``run_unit`` as one ``engine.Runs`` (``unit_runs``) through the one epoch loop (``loop.train``), with
checkpoints, TensorBoard and progress as its callbacks. An executor (``jal_plugins.executors``)
decides where units train: this machine's processes, or a Ray cluster. Progress goes to the
``jal_plugins.progress`` logger; the command line shows it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import multiprocessing
import os
from dataclasses import asdict
from pathlib import Path

from jal_plugins import curves
from jal_plugins.job import Job, prepare, validate
from jal_plugins.report import atomic_write
from jal_plugins.results import ResultStore, load_checkpoint, save_checkpoint

MEASURE = "auto"  # --stack auto: the stack size is measured


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
    if data.corrections is not None:  # what the user's reviewed decisions changed
        out["corrections"] = data.corrections
    if job.selection is not None:  # how it was tuned: the budget every tuned loss gets, in its table header
        out["search"] = {"candidates": len(info.get("candidates") or []), "folds": job.selection.folds,
                         "searched": list(job.selection.searched)}  # fmt: skip
    if diverged:
        out.update(diverged_epoch=diverged.epoch, error=str(diverged))
    return out


def _write_curve(store: ResultStore | None, job: Job, history: list[dict]) -> None:
    if store is not None:
        run_dir = store.run_dir(job)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / "curve.json", lambda p: p.write_text(json.dumps(history, indent=1)))


PROGRESS = logging.getLogger("jal_plugins.progress")  # one line per epoch; ``done=True`` ends a unit's


def _progress(label: str, images: int):
    """A loop callback that logs the mean statistics of the live runs after every epoch."""

    def report(runs, stats: list) -> None:
        live = [s for s in stats if s is not None]
        if not live:
            return
        loss, acc, test = (_mean([s.get(k) for s in live]) for k in ("train_loss", "train_accuracy", "test_accuracy"))
        speed = images / max(live[0]["seconds"], 1e-9)  # seconds are each run's share of the epoch
        PROGRESS.info("[%s] epoch %d/%d loss %.4f acc %.1f%% test %s %s img/s", label, runs.epoch, runs.epochs, loss,
                      100 * acc, "–" if test is None else f"{test:.1%}", f"{speed:,.0f}")  # fmt: skip

    return report


# -- a unit: one run (any method), a stack of erm runs, or their selections ----------------------------
def unit_runs(prepared: list, rank: int = 0, world: int = 1):
    """The runs of ``prepared`` as one ``engine.Runs``: their selections (every run's candidates
    cross-fitted together, then the winners), a stack of ``erm`` runs, or one method's learner."""
    from jal_plugins import create_method
    from jal_plugins.engine import Stack
    from jal_plugins.methods.base import Learner
    from jal_plugins.selection import Selections

    first = prepared[0]
    contexts = [p.context for p in prepared]
    if first.job.selection is not None:
        if world > 1:
            raise ValueError("a search (auto) trains its candidates on one device; run without torchrun")
        grids = [p.job.selection.candidates(c.loss_params, c.config_changes) for p, c in zip(prepared, contexts)]
        return Selections(contexts, grids, k=first.job.selection.folds, ties=[p.job.selection.ties for p in prepared])
    if len(prepared) == 1:
        return Learner(create_method(first.job.method, first.context, **first.job.method_params), rank, world)
    models, losses, configs, seeds = zip(*[c.parts() for c in contexts])
    return Stack(models, losses, configs, seeds, first.device, input_shape=first.data.input_shape)


def run_unit(jobs: list[Job], store: ResultStore | None = None, progress: bool = False,
             tensorboard: bool = False) -> list[dict]:  # fmt: skip
    """Train ``jobs`` (one job, or compatible canonical ``erm`` jobs) as one ``engine.Runs``, resuming
    each from its checkpoint; their records (in any order: runs interrupted at different epochs
    resume apart). A checkpoint is written after the first epoch, the last, and as often between as
    costs about 5 % of the training (``loop.now_and_then``); TensorBoard scalars (``tensorboard``)
    after every epoch, the curves at the end; the records are returned, not written."""
    import torch

    from jal_plugins.engine import DeviceData
    from jal_plugins.loop import now_and_then, train

    rank, world = distributed()
    device = _rank_device(jobs[0].device, world)
    prepared = [prepare(job, device=device, ddp=world > 1) for job in jobs]
    first = prepared[0]
    settings = [p.job.settings() for p in prepared]
    paths = [store.run_dir(p.job) / "checkpoint.pt" for p in prepared] if store else None
    states = [load_checkpoint(path, s, device) for path, s in zip(paths, settings)] if store else [None] * len(jobs)
    epochs = {0 if s is None else s["epoch"] for s in states}
    if len(epochs) > 1:  # runs interrupted at different epochs resume in separate units
        by_epoch: dict[int, list[Job]] = {}
        for job, state in zip(jobs, states):
            by_epoch.setdefault(0 if state is None else state["epoch"], []).append(job)
        return [r for group in by_epoch.values() for r in run_unit(group, store, progress, tensorboard)]
    runs = unit_runs(prepared, rank, world)
    runs.load_states(states)
    data = first.data
    labels = torch.stack([torch.as_tensor(p.labels, dtype=torch.long) for p in prepared]).to(device)
    train_data = DeviceData(data.x_train, data.y_train, device, data.mean, data.std)
    test = DeviceData(data.x_test, data.y_test, device, data.mean, data.std)
    lead = rank == 0
    label = first.job.label() if len(jobs) == 1 else f"{len(jobs)} runs: {first.job.dataset} {first.model}"

    def checkpoint(runs, stats):
        if store is not None and lead:
            for path, state, setting in zip(paths, runs.run_states(), settings):
                save_checkpoint(path, state, setting)

    with curves.boards(store, jobs, runs.histories, tensorboard and lead) as boards:

        def board(runs, stats):
            for run_stats, run_board in zip(stats, boards):
                if run_stats is not None and run_board is not None:
                    run_board.add(runs.epoch, run_stats)

        callbacks = (board, now_and_then(checkpoint), *((_progress(label, len(train_data)),) if progress and lead else ()))
        train(runs, train_data, labels, test=test, callbacks=callbacks, reproducible=first.resolved.config.deterministic)
    if progress and lead:
        PROGRESS.info("", extra={"done": True})
    results = []
    for r, p in enumerate(prepared):
        if lead:
            _write_curve(store, p.job, runs.histories[r])
        results.append(record(p, runs.histories[r], runs.info(r), runs.diverged[r], world, stack_size=runs.runs))
    return results


def _mean(values: list):
    """The mean of the numbers in ``values``; None when there are none (test accuracy while a selection trains)."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# -- planning -----------------------------------------------------------------------------------
def stack_key(job: Job) -> tuple | None:
    """What runs must share to train in one stack (None: this job trains alone)."""
    from jal_plugins.engine import SHARED
    if job.method != "erm":
        return None
    r = job.resolved()
    config = asdict(r.config)
    shared = tuple(config[k] for k in SHARED)
    return (job.dataset, json.dumps(job.dataset_params, sort_keys=True), r.model,
            json.dumps(r.model_params, sort_keys=True), job.device, shared, job.selection is not None)  # fmt: skip


def _probe_factories(job: Job):
    """(one run's parts, one batch of prepared inputs) for timing ``job``'s network."""
    from jal_plugins.engine import DeviceData
    prepared = prepare(job)
    data, device, context = prepared.data, prepared.device, prepared.context
    batch = prepared.resolved.config.batch_size
    if job.selection is not None:  # a selection trains its candidates: time the first
        first = job.selection.candidates(context.loss_params, context.config_changes)[0]
        context = context.vary(first["loss_params"], first["config"])

    def inputs():
        view = DeviceData(data.x_train[:batch], data.y_train[:batch], device, data.mean, data.std)
        return view.prepare(view.x) if view.images else view.x

    return context.parts, inputs, device, data.input_shape


def stack_plan(jobs: list[Job], stack, workers: int = 1, log=None) -> list[list[Job]]:
    """``jobs`` as units of work: stacks of compatible ``erm`` runs, and single runs."""
    from jal_plugins.autostack import bytes_per_run, choose_stack_size, chunks, max_fitting, stackable
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
        elif group[0].selection is not None and stack == MEASURE:  # selections: a unit per worker, each
            parts, inputs, device, _ = _probe_factories(group[0])  # stacking its candidates itself, as many as memory holds
            trained = group[0].selection.networks(group[0].loss_params)  # per selection, every fold's
            size = min(len(group), max_fitting(bytes_per_run(parts(), inputs()) * trained, device))
        elif stack == MEASURE:
            parts, inputs, device, shape = _probe_factories(group[0])
            size = choose_stack_size(key, parts, inputs, len(group), device, shape, 1 if workers > 1 else None)
            if log:
                log(f"--stack auto: {size} run(s) at a time for {len(group)} {group[0].dataset} runs (measured)")
        else:
            size = min(stack, len(group))
            parts, inputs, device, shape = _probe_factories(group[0])
            if group[0].selection is None and not stackable(parts, device, shape):
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
    return sum(1 if job.selection is None else job.selection.work(job.loss_params) for job in unit)


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
    return run_unit(jobs, store, progress, tensorboard)


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
             stack=MEASURE, log=None, executor: str = "local", address: str | None = None,
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
