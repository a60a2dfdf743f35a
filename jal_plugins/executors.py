"""Where units of work train: on this machine (``local``) or as tasks on a Ray cluster (``ray``).

A unit is a stack of runs or a single run (``runner.stack_plan``), and ``runner.train_unit`` is its
work whoever runs it: claim the runs, train them with checkpoints (``loop.now_and_then``), record them. An
executor only decides where the training part happens:

- ``local``: this process and ``workers - 1`` spawned single-threaded ones, each running whole units;
  claims are held and records written by the process that trains.
- ``ray``: one Ray task per unit, asking for one GPU when the runs train on a GPU and otherwise for
  one CPU (trained single-threaded, as the local workers do). The driver, this process, runs
  ``train_unit`` in a thread per unit in flight: it holds the claims of the runs it dispatched and
  writes ``results.jsonl`` from the records the task returns, because OS file locks taken on other
  nodes are unreliable on network filesystems. The results file is thus written exactly as the
  local executor writes it: atomically, under one lock, never twice for a run.

Checkpoints, curves and TensorBoard files go to ``--out`` on a filesystem every node mounts (what
Ray on Slurm or Kubernetes usually has: a home, scratch or persistent volume); they are not sent
through the driver. A retried task then finds its checkpoint on whatever node it lands, the
per-epoch checkpoints of every run (weights and momentum: 13 MB for cnn8, 170 MB for the CIFAR-100
ResNet-34) never queue on the driver's link, and a killed driver loses nothing the tasks wrote.
The driver leaves a marker file in ``--out``; a task that cannot see it says ``--out`` is not
shared instead of training without checkpoints.

Failures: a task whose worker or node dies is retried by Ray (``MAX_RETRIES``) and resumes from its
last checkpoint. A killed driver takes its tasks with it (Ray ends a job's tasks with its driver)
and releases its claims; the same command then resumes every unrecorded run from its last
checkpoint, so at most one epoch per run is lost and nothing is recorded twice.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import socket
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import replace
from pathlib import Path

from jal_plugins.checks import choice

EXECUTORS = ("local", "ray")
DISCOVER = "auto"  # --address auto: Ray finds the cluster this machine belongs to
MAX_RETRIES = 3  # Ray retries of a task whose worker or node died
ANSWER_SECONDS = 5  # to open a TCP connection to a named cluster
# A Ray Client head starts a server process per connection; on a loaded head that start can fail
# (seen in CI) where the next one succeeds.
CLIENT_RETRIES = 2
# A named address that accepts connections without being a Ray cluster (a mistyped port, the
# dashboard's) would keep ray.init retrying for minutes: these bound it to about 20 s (a live
# cluster answers in milliseconds). Ray reads them when it is imported and initialised.
BOUNDED_CONNECT = {
    "RAY_gcs_rpc_server_connect_timeout_s": "5", "RAY_py_gcs_connect_timeout_s": "5",
    "RAY_gcs_server_port_wait_time_s": "1", "RAY_NUM_REDIS_GET_RETRIES": "1",
    "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "5", "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "5",
}  # fmt: skip


def check(name: str, address: str | None) -> None:
    """Refuse an unknown executor, a missing Ray, or an address without Ray, before anything runs."""
    choice("executor", name, EXECUTORS)
    if name == "ray" and importlib.util.find_spec("ray") is None:
        from jal_plugins.checks import MissingExtra

        raise MissingExtra('--executor ray needs Ray: pip install "jal-plugins[ray]"')
    if name == "ray" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--executor ray sends whole runs to a cluster; it does not run under torchrun")
    if name != "ray" and address not in (None, DISCOVER):  # auto, the default, names no cluster
        raise ValueError(f"address={address!r} names a Ray cluster; it needs --executor ray")


def create(name: str, workers: int | None, address: str | None, jobs: list, out: Path | None, log=None,
           progress: bool = False):  # fmt: skip
    """The executor ``name`` for ``jobs`` (a context manager): ``Local`` or ``Ray``."""
    check(name, address)
    if name == "ray":
        return Ray(address, workers, jobs[0].device, out, log, progress)
    return Local(workers or 1, spawn=len(jobs) > 1)


# -- this machine ---------------------------------------------------------------------------------
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


class Local:
    """This process and ``workers - 1`` spawned single-threaded ones, each running units in turn.

    The spawned processes start (and import) at once, while this one plans; this one, already warm,
    trains too. Units are handed out one at a time, so no process idles while work is left.
    """

    local = True

    def __init__(self, workers: int = 1, spawn: bool = True):
        self.slots = workers
        self.pool = None
        if workers > 1 and spawn:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(workers - 1, mp_context=ctx, initializer=_worker_init)
            for _ in range(workers - 1):
                self.pool.submit(_warm)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def remote(self, fn):
        """``fn`` runs here."""
        return fn

    def map(self, fn, items: list) -> list:
        """``fn(item)`` for every item, in this process and the spawned ones; results in any order."""
        if self.pool is None or len(items) < 2:
            return [fn(item) for item in items]
        import threading
        from collections import deque

        import torch

        queue, results, errors = deque(items), [], []
        outstanding = [0]  # items the spawned processes hold
        lock = threading.Condition()

        def take():
            with lock:
                return queue.popleft() if queue and not errors else None

        def feed():
            with lock:
                if not queue or errors:
                    return
                item = queue.popleft()
                outstanding[0] += 1
            self.pool.submit(fn, item).add_done_callback(collect)

        def collect(future):
            with lock:
                if future.exception() is not None:
                    errors.append(future.exception())
                else:
                    results.append(future.result())
                outstanding[0] -= 1
                lock.notify_all()
            feed()

        for _ in range(self.slots - 1):
            feed()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            while (item := take()) is not None:
                done = fn(item)
                with lock:
                    results.append(done)
        finally:
            torch.set_num_threads(threads)
        with lock:  # the spawned processes finish what they hold
            lock.wait_for(lambda: outstanding[0] == 0)
        if errors:
            raise errors[0]
        return results


# -- a Ray cluster --------------------------------------------------------------------------------
def _named(address: str | None) -> tuple[str | None, str]:
    """(the cluster address the user named, and where: ``address`` or ``RAY_ADDRESS``), or None for auto."""
    if address not in (None, DISCOVER):
        return address, "address"
    env = os.environ.get("RAY_ADDRESS", "")
    return (env, "RAY_ADDRESS") if env not in ("", DISCOVER, "local") else (None, "address")


def _answers(address: str, what: str) -> None:
    """An error naming ``address`` unless something accepts a TCP connection there."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be HOST:PORT or ray://HOST:PORT, got {what}={address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=ANSWER_SECONDS):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConnectionError(
            f"{what}={address!r}: no Ray cluster answers there ({reason}); start one (ray start --head) "
            "or correct the host and port"
        ) from None


def _connect(address: str | None):
    """(``ray`` initialised, whether this call initialised it): connected to the named cluster, else
    the way ``ray.init()`` does it (a running local cluster, or a new one)."""
    named, what = _named(address)
    if named is not None:
        _answers(named, what)
        for key, value in BOUNDED_CONNECT.items():
            os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():  # the caller's own connection
        return ray, False
    retries = CLIENT_RETRIES if str(named).startswith("ray://") else 0
    for attempt in range(retries + 1):
        try:
            with _held_output() if named else contextlib.nullcontext():  # a local start's processes keep fd 2
                ray.init(address=named, logging_level=logging.WARNING)
            return ray, True
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            if named is None:
                raise
            # ConnectionAbortedError: Ray Client's head could not start this connection's server
            if not isinstance(exc, ConnectionAbortedError) or attempt == retries:
                raise _unjoinable(named, what, exc) from exc
            time.sleep(1 + attempt)


def _unjoinable(named: str, what: str, exc: BaseException) -> ConnectionError:
    """One error naming the address and Ray's own reason for ``exc``."""
    root = exc
    while root.__cause__ is not None:  # e.g. Ray's authentication error behind "failed to connect"
        root = root.__cause__
    lines = [line.strip() for line in str(root).splitlines() if line.strip()] or [type(root).__name__]
    # Ray Client puts the head's whole traceback in its message: the last line is the reason
    reason = lines[-1] if "Traceback" in str(root) else lines[0]
    return ConnectionError(f"{what}={named!r}: cannot join a Ray cluster there ({reason})")


@contextlib.contextmanager
def _held_output():
    """Hold Ray's output while it connects (its C++ code writes to file descriptor 2, its Python code
    warns): shown once it is connected, dropped when it fails, as the error then says it all."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        held.seek(0)
        sys.stderr.write(held.read().decode(errors="replace"))
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _run_task(fn, marker: str | None, jobs: list, *args):
    """The body of every Ray task: check ``--out`` is shared, train on what Ray gave, run ``fn``.

    Returns ``fn``'s value and the warnings it gave, which the driver shows.
    """
    import ray
    import torch

    if marker is not None and not os.path.exists(marker):
        raise FileNotFoundError(
            f"--out {os.path.dirname(marker)!r} is not visible on Ray node {socket.gethostname()}: --executor ray "
            "keeps checkpoints under --out, so it must be a folder every node mounts (NFS, Lustre, a shared volume)"
        )
    gpu = bool(ray.get_gpu_ids())
    if not gpu:
        torch.set_num_threads(1)
    # a task without a GPU of its own still sees the node's GPUs: "auto" must not take one
    jobs = [replace(job, device="cuda" if gpu else "cpu") if job.device == "auto" else job for job in jobs]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        value = fn(jobs, *args)
    return value, [str(w.message) for w in caught]


class Ray:
    """One Ray task per unit on the cluster at ``address``; ``workers`` (default: the cluster's CPUs,
    or GPUs for GPU runs) at once. A context manager: connects on entry, disconnects on exit."""

    local = False

    def __init__(self, address: str | None, workers: int | None, device: str, out: Path | None, log=None,
                 progress: bool = False):  # fmt: skip
        if str(device).startswith("cuda:"):
            raise ValueError(f"device={device!r} names a GPU of this machine; with --executor ray use cuda or auto "
                             "(Ray gives each task its GPU)")  # fmt: skip
        self.address, self.workers, self.device, self.log, self.progress = address, workers, str(device), log, progress
        self.out = Path(out).resolve() if out is not None else None
        self.marker = None

    def __enter__(self):
        self.ray, self.owned = _connect(self.address)
        try:
            self._setup()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _setup(self) -> None:
        ray = self.ray
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        gpu = self.device == "cuda" or (self.device == "auto" and gpus > 0)
        capacity = gpus if gpu else cpus
        if capacity == 0:  # its tasks would wait forever
            raise ValueError(f"device={self.device!r}: the Ray cluster has {cpus} CPUs and {gpus} GPUs, none for these "
                             "runs; start its nodes first (ray start --address ...)")  # fmt: skip
        self.resources = {"num_cpus": 1, "num_gpus": 1 if gpu else 0}
        self.slots = min(self.workers, capacity) if self.workers else capacity
        self.task = ray.remote(_run_task)
        if self.out is not None:
            self.marker = self.out / f".ray-driver-{uuid.uuid4().hex[:12]}"
            self.marker.touch()
        if self.log:
            each = "GPU" if gpu else "CPU"
            self.log(f"ray: {cpus} CPUs, {gpus} GPUs; {self.slots} task(s) at a time, each on 1 {each}")

    def __exit__(self, *exc):
        if self.marker is not None:
            self.marker.unlink(missing_ok=True)
        if self.owned:
            self.ray.shutdown()

    def remote(self, fn):
        """``fn(jobs, *args)`` as a Ray task with the resources of a unit; blocks for its value."""
        return functools.partial(self._call, fn)

    def _call(self, fn, jobs: list, *args):
        ray = self.ray
        task = self.task.options(name=f"jal-plugins {fn.__name__}", max_retries=MAX_RETRIES, **self.resources)
        marker = None if self.marker is None else str(self.marker)
        try:
            value, notes = ray.get(task.remote(fn, marker, jobs, *args))
        except ray.exceptions.RayTaskError as exc:  # the task raised: the same error, as if raised here
            if isinstance(exc.cause, Exception):
                raise exc.cause from exc
            raise RuntimeError(str(exc).splitlines()[0]) from exc
        except ray.exceptions.RayError as exc:  # its worker or node died more than MAX_RETRIES times
            raise RuntimeError(f"a Ray task of {len(jobs)} run(s) failed: {str(exc).splitlines()[0]}") from exc
        for note in notes:
            warnings.warn(note, stacklevel=2)
        return value

    def map(self, fn, items: list) -> list:
        """``fn(item)`` for every item, ``slots`` at a time in driver threads; results in any order.

        After a failure no new item starts; those running finish (and are recorded) first. On an
        interrupt the threads are left to end with the connection (``__exit__``).
        """
        from concurrent.futures import ThreadPoolExecutor, as_completed

        pool = ThreadPoolExecutor(self.slots, thread_name_prefix="jal-plugins-ray")
        futures = [pool.submit(fn, item) for item in items]
        results, errors = [], []
        try:
            for count, future in enumerate(as_completed(futures), 1):
                if future.cancelled():
                    continue
                if future.exception() is not None:
                    errors.append(future.exception())
                    pool.shutdown(wait=False, cancel_futures=True)
                    continue
                results.append(future.result())
                if self.progress and self.log:
                    self.log(f"ray: {count}/{len(items)} units done")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        if errors:
            raise errors[0]
        return results
