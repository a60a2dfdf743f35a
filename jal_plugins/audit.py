"""Which labels of a dataset are wrong? Out-of-sample probabilities from a robust loss, then cleanlab.

Every labelled example of the source is audited, the test split included: a held-out split is for
training runs, not a reason to leave a label unchecked. Its probabilities come from a network that
never saw it: ``folds`` stratified folds, trained together as stacked runs (each fold with its own
seed and training rows, all with the given labels; one stack, or several where that measures
faster: ``autostack.measured_stacks``) through the run assembly of ``jal_plugins.job`` (the
dataset's recipe, the loss and its preset). cleanlab's ``find_label_issues`` then flags the likely
errors, ``get_label_quality_scores`` ranks them and its confident joint estimates the noise matrix.

Files written to ``out`` (and nowhere else: data caches go to ``out/cache`` unless the dataset is
given its own ``cache_dir``, matplotlib's font cache to ``out/cache/matplotlib`` unless
``MPLCONFIGDIR`` is set):

- ``label_issues.csv``: the flagged examples only, worst first: ``index`` (position in the source),
  ``id`` (relative path, ``SPLIT/ROW`` or row number), ``given_label``, ``suggested_label`` (class
  names), ``label_quality`` (cleanlab's self-confidence: the probability of the given label).
- ``label_issues.png``: the top suspects with "given → suggested" (images), or issues per class (tables).
- ``audit.json``: the summary; ``pred_probs.npz``: ``index``, ``given`` and the out-of-sample
  ``pred_probs`` of every example, for cleanlab's other tools.
- ``audit-checkpoint.pt``: the folds after each epoch; the same command resumes from it.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import os
import time
from pathlib import Path

import numpy as np

from jal_plugins.job import Job

CHECKPOINT = "audit-checkpoint.pt"
GRID = 36  # suspect images in label_issues.png
TOP = 10  # issues in the summary


def defaults() -> dict:
    """The ``[audit]`` table of ``registry.toml``: folds, loss, loss parameters and training overrides."""
    from jal_plugins.registry import load

    table = dict(load().get("audit", {}))
    table.pop("description", None)
    return table


def audit_job(dataset: str, out, *, loss: str | None = None, loss_params: dict | None = None,
              config: dict | None = None, dataset_params: dict | None = None, **fields) -> Job:  # fmt: skip
    """The canonical, validated ``Job`` whose recipe trains every fold.

    The loss, its parameters and the training overrides default to ``registry.toml``'s ``[audit]``
    (explicit values win); a dataset that takes ``cache_dir`` gets ``out/cache`` unless given one.
    """
    from jal_plugins.job import validate
    from jal_plugins.plugins import host

    table = defaults()
    params = dict(dataset_params or {})
    factory = host()["datasets"].get(dataset).factory
    if "cache_dir" in inspect.signature(factory).parameters and params.get("cache_dir") is None:
        params["cache_dir"] = str(Path(out).resolve() / "cache")
    default_params = table.get("loss_params", {}) if loss is None else {}
    job = Job(dataset=dataset, dataset_params=params, loss=loss or table["loss"],
              loss_params={**default_params, **(loss_params or {})},
              config={**table.get("config", {}), **(config or {})}, **fields)  # fmt: skip
    return validate(job)


def _digest(x: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(x).data)
    h.update(np.ascontiguousarray(labels).data)
    return h.hexdigest()[:16]


def _check_folds(labels: np.ndarray, folds: int, names: list[str]) -> None:
    counts = np.bincount(labels, minlength=len(names))
    if counts.min() < folds:
        k = int(counts.argmin())
        raise ValueError(f"class {names[k]!r} has {counts[k]} example(s); --folds {folds} needs at least {folds} "
                         "per class (use fewer folds, or remove the class)")  # fmt: skip


def out_of_sample(job: Job, folds: int, out: Path, progress=None):
    """``(data, inputs, source positions, given labels, pred_probs (N, K), model name, selection)`` of
    every example.

    With ``a="auto"`` the candidates first train together on all the labels, cross-fitted, and the
    best (``jal_plugins.selection``) sets ``a`` for every fold; ``selection`` is its
    ``info()`` (None without). The folds then train together. Both are checkpointed to ``out``
    after every epoch and resumed from it.
    ``progress(epoch, epochs)`` is called after each epoch.
    """
    import torch

    from jal_plugins.autostack import measured_stacks
    from jal_plugins.engine import DeviceData
    from jal_plugins.job import prepare
    from jal_plugins.methods.crossfit import FOLD_SEED, check_folds, stratified_folds
    from jal_plugins.results import load_checkpoint, save_checkpoint
    from jal_plugins.selection import HeldOut, candidates, wants_selection

    check_folds(folds)
    prepared = prepare(job)
    data, device = prepared.data, prepared.device
    x, given, index = data.labelled()
    _check_folds(given, folds, data.names)
    settings = {**job.settings(), "folds": folds, "data": _digest(x, given)}
    path = out / CHECKPOINT
    state = load_checkpoint(path, settings, device) or {}
    examples = DeviceData(x, given, device, data.mean, data.std)

    def save(**parts):
        save_checkpoint(path, parts, settings)

    context, chooser = prepared.context, None
    if wants_selection(job.loss_params):  # a="auto": one selection on all the labels, then the folds
        chooser = HeldOut(context, candidates(context.loss_params, context.config_changes), calibrate=False)
        if "selection" in state:
            chooser.load_state_dict(state["selection"])
        while chooser.phase == "select":
            chooser.train_epoch(examples)
            save(selection=chooser.state_dict())
            if progress:
                progress(chooser.epoch, 2 * chooser.select_epochs)  # the folds train as many epochs
        chosen = chooser.candidates[chooser.chosen]
        context = context.vary(chosen["loss_params"], chosen["config"])
    splits = stratified_folds(given, folds, job.seed)
    parts = [context.parts(seed_offset=FOLD_SEED + k) for k in range(folds)]
    stack = measured_stacks(parts, device, data.input_shape)
    if "runs" in state:
        stack.load_states(state["runs"], state.get("sizes"))
    rows = [torch.as_tensor(train) for train, _ in splits]
    done = chooser.select_epochs if chooser else 0
    while stack.epoch < stack.epochs:
        stack.train_epoch(examples, rows=rows)
        selection = {"selection": chooser.state_dict()} if chooser else {}
        save(epoch=stack.epoch, runs=stack.run_states(), sizes=stack.sizes, **selection)
        if progress:
            progress(done + stack.epoch, done + stack.epochs)
    for fold, error in enumerate(stack.diverged):
        if error is not None:
            raise type(error)(error.epoch, f"fold {fold + 1} of {folds}: {error.reason}")
    probs = torch.softmax(stack.logits(examples).double(), 2).cpu().numpy()
    pred_probs = np.empty(probs.shape[1:])
    for fold, (_, held) in enumerate(splits):
        pred_probs[held] = probs[fold, held]
    chosen = None if chooser is None else chooser.info()
    return data, x, index, given, pred_probs, prepared.model, chosen


def find_issues(given: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(flagged rows worst first, label quality of every row, T[true, given], estimated noise rate)``."""
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from jal_plugins.noise import from_cleanlab

    # n_jobs=1: cleanlab's worker pool relies on fork-inherited globals and breaks in spawned workers
    flagged = np.flatnonzero(find_label_issues(given, pred_probs, n_jobs=1))
    quality = get_label_quality_scores(given, pred_probs)
    flagged = flagged[np.argsort(quality[flagged], kind="stable")]
    _, noise_matrix, _, joint = estimate_py_and_noise_matrices_from_probabilities(given, pred_probs)
    return flagged, quality, from_cleanlab(noise_matrix), float(1 - np.trace(joint) / joint.sum())


def _write_csv(path: Path, rows: list[dict]) -> None:
    from jal_plugins.report import atomic_write

    def write(tmp):
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, ["index", "id", "given_label", "suggested_label", "label_quality"])
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def audit(job: Job, out, folds: int | None = None, progress=None) -> dict:
    """Audit every labelled example of ``job``'s dataset (``folds``: default ``[audit]``'s); write the
    files to ``out``; return the summary."""
    from jal_plugins.datasets.cache import write_npz
    from jal_plugins.report import atomic_write
    from jal_plugins.results import writable_folder

    start = time.perf_counter()
    folds = defaults()["folds"] if folds is None else folds
    out = writable_folder(out)
    data, x, index, given, pred_probs, model, selection = out_of_sample(job, folds, out, progress)
    flagged, quality, matrix, noise_rate = find_issues(given, pred_probs)
    names = data.names
    suggested = pred_probs.argmax(1)
    ids = data.example_ids(index[flagged])
    rows = [{"index": int(index[r]), "id": i, "given_label": names[given[r]], "suggested_label": names[suggested[r]],
             "label_quality": float(f"{quality[r]:.6g}")} for r, i in zip(flagged, ids)]  # fmt: skip
    _write_csv(out / "label_issues.csv", rows)
    order = np.argsort(index, kind="stable")
    arrays = {"index": index[order], "given": given[order], "pred_probs": pred_probs[order].astype(np.float32)}
    atomic_write(out / "pred_probs.npz", lambda p: write_npz(p, arrays))
    counts = np.bincount(given, minlength=len(names))
    issues = np.bincount(given[flagged], minlength=len(names))
    if data.is_image:
        chart = suspects_chart(out / "label_issues.png", x[flagged[:GRID]], rows[:GRID])
    else:
        chart = issues_chart(out / "label_issues.png", names, issues)
    resolved = job.resolved()
    loss_params = resolved.loss_params if selection is None else {**resolved.loss_params, **selection["chosen"]["loss_params"]}
    summary = {
        "dataset": job.dataset, "dataset_params": job.dataset_params, "examples": int(len(given)),
        "classes": names, "folds": folds, "loss": job.loss, "loss_params": loss_params, "model": model,
        "epochs": resolved.config.epochs, "seed": job.seed, "issues": int(len(flagged)),
        "selection": None if selection is None else {"chosen": selection["chosen"], "candidates": selection["candidates"],
                                                     "held_out_accuracy": selection["held_out_accuracy"]},
        "estimated_noise_rate": noise_rate,
        "per_class": [{"class": n, "examples": int(c), "issues": int(i), "noise_rate": float(1 - matrix[k, k])}
                      for k, (n, c, i) in enumerate(zip(names, counts, issues))],
        "noise_matrix": matrix.tolist(), "top": rows[:TOP],
        "files": {"csv": str(out / "label_issues.csv"), "png": None if chart is None else str(chart),
                  "pred_probs": str(out / "pred_probs.npz")},
        "seconds": time.perf_counter() - start,
    }  # fmt: skip
    atomic_write(out / "audit.json", lambda p: p.write_text(json.dumps(summary, indent=1)))
    return summary


def _pyplot(out: Path):
    """matplotlib's pyplot (None without matplotlib), its font cache under ``out/cache`` unless
    ``MPLCONFIGDIR`` says where."""
    # matplotlib reads MPLCONFIGDIR once, on import; its default is a cache in the home folder
    os.environ.setdefault("MPLCONFIGDIR", str(Path(out).resolve() / "cache" / "matplotlib"))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def suspects_chart(path: Path, images: np.ndarray, rows: list[dict]) -> Path | None:
    """A grid of the suspect images (uint8 NCHW), "given → suggested" under each; None without matplotlib."""
    from jal_plugins.report import atomic_write

    plt = _pyplot(path.parent)
    if plt is None:
        return None
    cols = 6
    lines = max(1, -(-len(rows) // cols))
    fig, axes = plt.subplots(lines, cols, figsize=(cols * 1.6, lines * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    for ax, image, row in zip(axes.flat, images, rows):
        ax.axis("on")
        gray = image.shape[0] == 1
        ax.imshow(image[0] if gray else image.transpose(1, 2, 0), cmap="gray" if gray else None, vmin=0, vmax=255)
        ax.set_xlabel(f"{row['given_label']} → {row['suggested_label']}", fontsize=7)
        ax.set_title(str(row["id"])[-24:], fontsize=6)
    if not rows:
        fig.suptitle("no label issues found", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return path


def issues_chart(path: Path, names: list[str], issues: np.ndarray) -> Path | None:
    """Label issues per given class as bars; None without matplotlib."""
    from jal_plugins.report import atomic_write

    plt = _pyplot(path.parent)
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(1.5 + 0.4 * len(names), 3.5))
    ax.bar(range(len(names)), issues)
    tilt = len(names) > 6
    ax.set_xticks(range(len(names)), names, rotation=45 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
    ax.set_ylabel("label issues")
    ax.set_xlabel("given label")
    ax.set_title(f"{int(issues.sum())} label issues per given class", fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return path
