"""Training curves in TensorBoard: ``OUT/tensorboard/DATASET/NOISE/LOSS/METHOD/SEED``, one run each.

Every run writes its train loss, train and test accuracy and learning rate with the epoch as the
step. A run that starts, or resumes from a checkpoint, deletes its own event files and writes its
history again from the checkpoint (a few numbers per epoch) before it trains on: whatever a killed
process wrote past its last checkpoint is gone, so TensorBoard shows each epoch once. The new file
also marks a restart at step 1, so a TensorBoard that had already read the old file drops it too.

A run name belongs to the first run that used it in an ``--out`` folder; a run with other settings
but the same name (another ``--lr`` into the same folder) writes under ``NAME@RUNID`` instead, so
curves of different runs never mix.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

FOLDER = "tensorboard"
OWNER = ".jal-run-id"  # in each run's folder: the run id that owns it
SCALARS = {"train_loss": "loss/train", "train_accuracy": "accuracy/train", "test_accuracy": "accuracy/test", "lr": "lr"}


def _writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        from jal_plugins.checks import MissingExtra

        raise MissingExtra('--tensorboard needs TensorBoard: pip install "jal-plugins[tensorboard]"') from None
    return SummaryWriter


def require(out) -> None:
    """Check, before anything trains, that curves can be written for runs recorded in ``out``."""
    if out is None:
        raise ValueError("--tensorboard writes under the results folder; give --out DIR")
    _writer_class()


def run_name(job) -> str:
    """``dataset/noise/loss/method/seed``, each part safe as a folder name."""
    parts = (job.dataset, job.noise, job.loss, job.method, job.seed)
    return "/".join(re.sub(r"[^\w.,:=+-]", "_", str(part)) for part in parts)


def log_dir(root: Path, job) -> Path:
    """The folder of ``job``'s event files: its name, or ``NAME@RUNID`` when another run owns the name."""
    key = job.key()
    plain = root / run_name(job)
    for folder in (plain, plain.with_name(f"{plain.name}@{key}")):
        folder.mkdir(parents=True, exist_ok=True)
        owner = folder / OWNER
        try:
            with owner.open("x") as fh:  # exclusive create: two runs never take one name
                fh.write(key)
            return folder
        except FileExistsError:
            if owner.read_text().strip() == key:
                return folder
    return folder  # NAME@RUNID is only ever this run's


class Board:
    """One run's TensorBoard writer, rewritten from ``history`` (the epochs already trained)."""

    def __init__(self, root: Path, job, history: list[dict]):
        self.folder = log_dir(root, job)
        for old in self.folder.glob("events.out.tfevents.*"):
            old.unlink()
        self.writer = _writer_class()(str(self.folder), purge_step=1)
        for step, stats in enumerate(history, 1):
            self.add(step, stats, flush=False)
        self.writer.flush()

    def add(self, step: int, stats: dict, flush: bool = True) -> None:
        """Epoch ``step``'s scalars; flushed, so TensorBoard shows them while the run trains."""
        for key, tag in SCALARS.items():
            if stats.get(key) is not None:
                self.writer.add_scalar(tag, stats[key], step)
        if flush:
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


@contextlib.contextmanager
def boards(store, jobs, histories, enabled: bool):
    """A ``Board`` per job under ``store``'s folder (None each when not ``enabled``), closed at the end."""
    if not enabled or store is None:
        yield [None] * len(jobs)
        return
    opened = [Board(store.out / FOLDER, job, history) for job, history in zip(jobs, histories)]
    try:
        yield opened
    finally:
        for board in opened:
            board.close()
