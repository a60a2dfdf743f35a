"""An ``--out`` folder: ``results.jsonl``, per-run folders with checkpoints and curves, and claims.

Several processes may share one folder (one per GPU, say): a run is *claimed* with an OS file lock
before it trains, so nobody else trains it, and released when its record is written or its process
dies; ``results.jsonl`` is rewritten atomically under a second lock, so no record is ever lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from pathlib import Path

from jal_plugins.report import atomic_write

RESULTS = "results.jsonl"


def writable_folder(path, what: str = "--out") -> Path:
    """``path`` as an existing or newly made folder we can write to; an error naming it otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{what} {str(path)!r} cannot be created: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {str(path)!r} is not writable")
    return path


def read_records(path: Path) -> list[dict]:
    """Every record of a results file, or an error naming the file and the line that is wrong."""
    path = Path(path)
    if not path.exists():
        return []
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected the results file (move it away to continue)")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} line {number} is not JSON ({exc.msg}); repair or remove that line") from None
        if not isinstance(record, dict) or "run_id" not in record:
            raise ValueError(
                f"{path} line {number} is not a jal-plugins run record (no run_id); repair or remove that line, "
                "or use another --out"
            )
        records.append(record)
    return records


class ResultStore:
    """The results of one ``--out`` folder."""

    def __init__(self, out):
        from filelock import FileLock

        self.out = writable_folder(out)
        self.path = self.out / RESULTS
        self._lock = FileLock(str(self.out / ".results.lock"))
        self.records()  # a broken results file is reported before anything trains

    def records(self) -> dict[str, dict]:
        """``{run_id: record}``."""
        return {r["run_id"]: r for r in read_records(self.path)}

    def add(self, record: dict) -> bool:
        """Append ``record`` unless its run is already recorded; True when it was written."""
        with self._lock:
            records = read_records(self.path)
            if any(r["run_id"] == record["run_id"] for r in records):
                return False
            text = "".join(json.dumps(r) + "\n" for r in [*records, record])
            atomic_write(self.path, lambda p: p.write_text(text))
        return True

    def run_dir(self, job) -> Path:
        return self.out / "runs" / job.slug()

    @contextlib.contextmanager
    def claim(self, run_id: str, wait: bool = False):
        """Hold run ``run_id`` (True) or learn that a live process holds it (False, unless ``wait``)."""
        from filelock import FileLock, Timeout

        (self.out / "claims").mkdir(exist_ok=True)
        lock = FileLock(str(self.out / "claims" / f"{run_id}.lock"), timeout=-1 if wait else 0)
        try:
            lock.acquire()
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()


TENSOR = "$tensor"  # a tensor's place in a checkpoint's JSON tree
PLAIN = (str, int, float, bool, type(None))  # values JSON gives back as they were


class _Inexact(Exception):
    """A value that JSON would not give back as it is (a tuple, a numpy number, a key that is no string)."""


def _tree(value, tensors: list):
    """``value`` as JSON-ready data, its tensors moved to ``tensors``; raises ``_Inexact``."""
    import torch

    kind = type(value)
    if kind is dict:
        if any(type(k) is not str for k in value) or TENSOR in value:
            raise _Inexact
        if all(type(v) in PLAIN for v in value.values()):  # an epoch's statistics: most of a checkpoint
            return value
        return {k: _tree(v, tensors) for k, v in value.items()}
    if kind is list:
        return [_tree(v, tensors) for v in value]
    if kind in PLAIN:
        return value
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return {TENSOR: len(tensors) - 1}
    raise _Inexact


def _untree(value, tensors: list):
    if isinstance(value, dict):
        return tensors[value[TENSOR]] if TENSOR in value else {k: _untree(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_untree(v, tensors) for v in value]
    return value


def _pack(tensors: list) -> tuple[list, list]:
    """``tensors`` as one flat buffer per dtype and device, and ``[buffer, offset, shape]`` of each."""
    import torch

    groups: dict = {}  # (dtype, device) -> [index, numbers so far, flat tensors]
    places = []
    for t in tensors:
        group = groups.setdefault((t.dtype, t.device), [len(groups), 0, []])
        places.append([group[0], group[1], list(t.shape)])
        group[1] += t.numel()
        group[2].append(t.detach().reshape(-1))
    return [torch.cat(flat) for _, _, flat in groups.values()], places


# The layout of the states in a checkpoint; one written with another layout restarts its run (moved
# aside, as a stale one is). 2: the one training core (cross-fitted folds train together).
CHECKPOINT_FORMAT = 2


def save_checkpoint(path: Path, state: dict, settings: dict) -> None:
    """Write ``state``, the checkpoint of a run with ``settings``, atomically.

    Everything but the tensors (histories, settings) is one JSON text, and the tensors one flat
    buffer per dtype: pickled object by object and tensor by tensor, the per-epoch checkpoints of a
    selection's 8 candidates took a quarter of the demo's time. A state JSON cannot hold exactly
    is pickled as it is.
    """
    import torch

    state = {**state, "settings": json.loads(json.dumps(settings, default=str)), "format": CHECKPOINT_FORMAT}
    tensors: list = []
    try:
        tree = _tree(state, tensors)
    except _Inexact:
        saved = state
    else:
        buffers, places = _pack(tensors)
        saved = {"buffers": buffers, "tree": json.dumps({"tree": tree, "places": places})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path), lambda p: torch.save(saved, p))


def read_checkpoint(path: Path, device="cpu"):
    """What ``save_checkpoint`` wrote at ``path`` (tensors on ``device``)."""
    import math

    import torch

    state = torch.load(path, map_location=device, weights_only=True)
    if isinstance(state, dict) and set(state) == {"buffers", "tree"}:
        packed = json.loads(state["tree"])
        tensors = [state["buffers"][b][o : o + math.prod(shape)].view(shape).clone() for b, o, shape in packed["places"]]
        return _untree(packed["tree"], tensors)
    return state


def load_checkpoint(path: Path, settings: dict, device) -> dict | None:
    """The checkpoint at ``path`` if it belongs to a run with ``settings``; else None.

    A checkpoint that cannot be read, or whose settings differ, is moved aside (``*.corrupt`` /
    ``*.stale``) with a warning, and the run starts from scratch: work is never silently resumed
    from a state it does not belong to.
    """
    import torch

    if not path.is_file():
        return None
    try:
        state = read_checkpoint(path, device)
        problem = None if isinstance(state, dict) and "epoch" in state else "holds no training state"
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file raises many kinds of errors
        state, problem = None, f"cannot be read ({type(exc).__name__}: {exc})"
    suffix = ".corrupt"
    if problem is None and state.get("format", 1) != CHECKPOINT_FORMAT:
        problem, suffix = f"was written by another version of jal-plugins (format {state.get('format', 1)})", ".stale"
    if problem is None and state.get("settings") != json.loads(json.dumps(settings, default=str)):
        problem, suffix = "was written with other settings", ".stale"
    if problem is None:
        return state
    aside = path.with_name(f"{path.name}{suffix}")
    if aside.exists():
        aside = path.with_name(f"{path.name}.{int(time.time())}{suffix}")
    os.replace(path, aside)
    warnings.warn(f"checkpoint {path} {problem}; moved it to {aside.name} and restarting that run", stacklevel=2)
    return None
