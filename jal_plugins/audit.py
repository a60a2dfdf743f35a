"""Which labels of a dataset are wrong? Probabilities from networks trained with a robust loss, then cleanlab.

Every labelled example of the source is audited, the test split included: a held-out split is for
training runs, not a reason to leave a label unchecked. ``folds`` stratified folds are trained
together as stacked runs (each fold with its own seed and training rows, all with the given labels;
one stack, or several where that measures faster: ``autostack.measured_stacks``) through the run
assembly of ``jal_plugins.job`` (the dataset's recipe, the loss and its preset), ``ensemble``
networks a fold. Each example's out-of-sample probabilities come from the networks that never saw
it; they give the count (``estimate_issues``), cleanlab's noise matrix and ``pred_probs.npz``.
The ranking (cleanlab's ``get_label_quality_scores``) and the suggested labels come from every
network's probabilities averaged: a robust loss does not learn a wrong label, so the networks that
trained on an example still doubt it, and four networks of five add what one alone misses
(``find_issues``). The worst ``--flag`` are flagged (``auto``: as many as ``estimate_issues`` counts).

Files written to ``out`` (and nowhere else: data caches go to ``out/cache`` unless the dataset is
given its own ``cache_dir``):

- ``label_issues.csv``: the flagged examples only, worst first: ``index`` (position in the source),
  ``id`` (relative path, ``SPLIT/ROW`` or row number), ``given_label``, ``suggested_label`` (class
  names), ``label_quality`` (cleanlab's self-confidence: the probability of the given label).
- ``report.html``: every suspect to review in a browser, decisions exported as ``decisions.csv``
  (``jal_plugins.review``).
- ``audit.json``: the summary; ``pred_probs.npz``: ``index``, ``id``, ``given``, ``label_quality``
  (the ranking's), ``mean_probs`` (every network's mean, which it ranks by) and the out-of-sample
  ``pred_probs`` of every example in source order, for cleanlab's other tools.
- ``audit-checkpoint.pt``: the folds (``loop.now_and_then``); the same command resumes from it.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import time
from pathlib import Path

import numpy as np

from jal_plugins.job import Job

CHECKPOINT = "audit-checkpoint.pt"
TOP = 10  # issues in the summary
SURE, SURE_ROWS = 0.1, 500  # the predictions whose disagreements with the labels count them (estimate_issues)


def defaults(model: str | None = None) -> dict:
    """The ``[audit]`` table of ``registry.toml``: folds, networks a fold, loss, loss parameters and
    training overrides, with those of ``[audit.models.MODEL]`` over them for the network ``model``."""
    from jal_plugins.registry import load

    table = dict(load().get("audit", {}))
    table.pop("description", None)
    own = dict(table.pop("models", {}).get(model, {}))
    return {**table, **own, "config": {**table.get("config", {}), **own.pop("config", {})}}


def audit_job(dataset: str, out, *, loss: str | None = None, loss_params: dict | None = None,
              config: dict | None = None, dataset_params: dict | None = None, **fields) -> Job:  # fmt: skip
    """The canonical, validated ``Job`` whose recipe trains every fold.

    The loss, its parameters, the training overrides and the network's parameters default to
    ``registry.toml``'s ``[audit]`` for the recipe's network (explicit values win); a dataset that
    takes ``cache_dir`` gets ``out/cache`` unless given one.
    """
    from jal_plugins.job import validate
    from jal_plugins.plugins import host

    table = defaults()
    params = dict(dataset_params or {})
    factory = host()["datasets"].get(dataset).factory
    if "cache_dir" in inspect.signature(factory).parameters and params.get("cache_dir") is None:
        params["cache_dir"] = str(Path(out).resolve() / "cache")

    def job(table):
        default_params = table.get("loss_params", {}) if loss is None else {}
        network = {**table.get("model_params", {}), **(fields.get("model_params") or {})}
        return validate(Job(dataset=dataset, dataset_params=params, loss=loss or table["loss"],
                            loss_params={**default_params, **(loss_params or {})},
                            config={**table.get("config", {}), **(config or {})},
                            **{**fields, "model_params": network}))  # fmt: skip

    first = job(table)
    own = defaults(first.resolved().model)
    return first if own == table else job(own)


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


def out_of_sample(job: Job, folds: int, out: Path, progress=None, ensemble: int = 1, flag="auto"):
    """``(data, inputs, source positions, given labels, pred_probs (N, K), every network's mean
    probabilities (N, K), model name, selection)`` of every example.

    With a search (``a=auto``: ``job.selection``) the candidates first train together on all the
    labels, cross-fitted, and the best (``jal_plugins.selection``) sets ``a`` for every fold;
    ``selection`` is its ``info`` (None without). The folds then train together
    (``folds.fold_networks``: ``ensemble`` networks a fold, their predictions averaged). Both are
    checkpointed to ``out`` (``loop.now_and_then``) and resumed from it. ``progress(epoch, epochs)`` is
    called after each epoch. ``flag`` is checked against the examples before any training.
    """
    from jal_plugins.engine import DeviceData
    from jal_plugins.folds import check_folds, fold_divergence, fold_networks
    from jal_plugins.job import prepare
    from jal_plugins.loop import now_and_then, raise_divergence, train
    from jal_plugins.results import load_checkpoint, save_checkpoint
    from jal_plugins.selection import Selections

    check_folds(folds)
    prepared = prepare(job)
    data, device = prepared.data, prepared.device
    x, given, index = data.labelled()
    _check_folds(given, folds, data.names)
    flag_count(flag, len(given))
    # where the data is cached is not a setting: a moved --out folder resumes (the digest names the data)
    settings = {**job.settings(), "folds": folds, "ensemble": ensemble, "data": _digest(x, given)}
    settings["dataset_params"] = {k: v for k, v in settings["dataset_params"].items() if k != "cache_dir"}
    path = out / CHECKPOINT
    state = load_checkpoint(path, settings, device) or {}
    examples = DeviceData(x, given, device, data.mean, data.std)
    reproducible = prepared.resolved.config.deterministic
    context, chooser, done = prepared.context, None, 0

    def save(**parts):
        save_checkpoint(path, parts, settings)

    def report(offset, total):
        return lambda runs, stats: progress(offset + runs.epoch, total) if progress else None

    if job.selection is not None:  # one search on all the labels, then the folds with its choice
        grid = job.selection.candidates(context.loss_params, context.config_changes)
        chooser = Selections([context], [grid], calibrate=False, k=job.selection.folds, ties=[job.selection.ties])
        if "selection" in state:
            chooser.load_states([state["selection"]])
        done = chooser.select_epochs
        save_selection = lambda runs, stats: save(epoch=runs.epoch, selection=runs.run_states()[0])  # noqa: E731
        train(chooser, examples, until=done, callbacks=(raise_divergence(), now_and_then(save_selection), report(0, 2 * done)),
              reproducible=reproducible)  # fmt: skip
        chosen = chooser.info(0)["chosen"]
        context = context.vary(chosen["loss_params"], chosen["config"])
    networks = fold_networks(context, folds, ensemble=ensemble)
    if "runs" in state:
        networks.load_states(state["runs"])
    selection = {"selection": chooser.run_states()[0]} if chooser else {}
    save_folds = lambda runs, stats: save(epoch=done + runs.epoch, runs=runs.run_states(), **selection)  # noqa: E731
    train(networks, examples, reproducible=reproducible,
          callbacks=(fold_divergence(folds), now_and_then(save_folds),
                     report(done, done + networks.epochs)))  # fmt: skip
    return (data, x, index, given, *networks.predictions(examples), prepared.model, chooser and chooser.info(0))


def parse_flag(value) -> int | float | str:
    """``--flag``: ``auto`` (the estimated number of wrong labels), a count ``N >= 1`` or a fraction in (0, 1)."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"--flag must be auto, a count or a fraction in (0, 1), got {value!r}") from None
    if number.is_integer() and "." not in text and "e" not in text:
        if number < 1:
            raise ValueError(f"--flag {value}: a count must be at least 1")
        return int(number)
    if not 0 < number < 1:
        raise ValueError(f"--flag {value}: a fraction must lie in (0, 1) (a count is a whole number)")
    return number


def flag_count(flag, examples: int) -> int | None:
    """How many of ``examples`` ``--flag`` flags (None for ``auto``: the estimate decides)."""
    flag = parse_flag(flag)
    if flag == "auto":
        return None
    if isinstance(flag, int):
        if flag > examples:
            raise ValueError(f"--flag {flag}: more than the {examples} examples of the source")
        return flag
    return max(1, round(flag * examples))


def estimate_issues(given: np.ndarray, pred_probs: np.ndarray, resamples: int = 200, seed: int = 0) -> dict:
    """The estimated number of wrong labels: the examples times the rate at which the labels disagree
    with the networks' surest predictions (``selection.label_keep_rate``: the surest ``SURE`` of the
    rows, at least ``SURE_ROWS`` of them, at most half), and a 95 % bootstrap interval over the
    examples (the probabilities held fixed).

    Why the surest tenth and not half: the networks' own mistakes count as noise, and a weak network
    (a small CNN on 4,136 photographs) is wrong on many of its surer half: at CIFAR-10N `aggre`'s
    8.9 % of wrong labels the half counted 3.0x of them, the tenth 0.93x. Measured against the truth
    (``benchmarks/audit_counts.py``, BENCHMARKS.md) on digits, Fashion-MNIST (symmetric, asymmetric)
    and CIFAR-10N (`worst`, `aggre`): 0.91-1.05x with the tenth, where cleanlab's confident joint
    counted up to 3.7x. Fewer rows widen the interval, hence the floor of ``SURE_ROWS``.
    """
    from jal_plugins.selection import label_keep_rate

    n = len(given)
    sure = min(0.5, max(SURE, SURE_ROWS / n))
    rows = np.random.default_rng(seed).integers(0, n, (resamples, n))
    low, high = np.percentile(n * (1 - label_keep_rate(pred_probs, given, rows, sure)), [2.5, 97.5])
    count = round(n * (1 - label_keep_rate(pred_probs, given, sure=sure)))
    return {"count": count, "interval": [int(np.floor(low)), int(np.ceil(high))]}


def find_issues(given: np.ndarray, pred_probs: np.ndarray, flag="auto", ranked: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:  # fmt: skip
    """``(flagged rows worst first, label quality of every row, T[true, given], estimate)``.

    Every row is ranked by its label quality (cleanlab's self-confidence in ``ranked``, default the
    out-of-sample ``pred_probs``); the flagged are the worst ``flag`` (``parse_flag``: ``auto`` flags
    the estimated number of wrong labels). ``estimate`` holds that number with its interval
    (``estimate_issues``) and the noise rate it implies; ``T`` is cleanlab's estimate from its
    confident joint; both from ``pred_probs``.

    Why the audit ranks by every network's mean (``folds.OutOfFold.predictions``) and counts by the
    out-of-sample probabilities: on 5,000 Fashion-MNIST images with 20 % wrong labels the mean of all
    five networks ranked them better than the one that held each out (AUPRC 0.953 -> 0.967
    symmetric, 0.851 -> 0.873 asymmetric; ``benchmarks/audit_signals.py --in-sample``), while the
    count was measured on the out-of-sample ones (``estimate_issues``), which the networks that
    trained on a label would lean towards.
    """
    from cleanlab.count import estimate_py_and_noise_matrices_from_probabilities
    from cleanlab.rank import get_label_quality_scores

    from jal_plugins.noise import from_cleanlab

    flag = parse_flag(flag)
    quality = get_label_quality_scores(given, pred_probs if ranked is None else ranked)
    estimate = estimate_issues(given, pred_probs)
    count = flag_count(flag, len(given))
    flagged = np.argsort(quality, kind="stable")[: estimate["count"] if count is None else count]
    _, noise_matrix, _, _ = estimate_py_and_noise_matrices_from_probabilities(given, pred_probs)
    estimate["noise_rate"] = estimate["count"] / len(given)
    return flagged, quality, from_cleanlab(noise_matrix), estimate


def _write_csv(path: Path, rows: list[dict]) -> None:
    from jal_plugins.report import atomic_write

    def write(tmp):
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, ["index", "id", "given_label", "suggested_label", "label_quality"])
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def audit(job: Job, out, folds: int | None = None, progress=None, *, ensemble: int | None = None,
                flag="auto") -> dict:  # fmt: skip
    """Audit every labelled example of ``job``'s dataset (``folds``, ``ensemble``: default ``[audit]``'s;
    ``flag``: how many to flag, ``parse_flag``); write the files to ``out``; return the summary."""
    from jal_plugins.datasets.cache import write_npz
    from jal_plugins.report import atomic_write
    from jal_plugins.results import writable_folder
    from jal_plugins.review import write_review

    start = time.perf_counter()
    own = defaults(job.resolved().model)
    folds = own["folds"] if folds is None else folds
    ensemble = own["ensemble"] if ensemble is None else ensemble
    flag = parse_flag(flag)  # refused before the training, not after it
    out = writable_folder(out)
    data, x, index, given, pred_probs, everyone, model, selection = out_of_sample(job, folds, out, progress, ensemble, flag)
    flagged, quality, matrix, estimate = find_issues(given, pred_probs, flag, ranked=everyone)
    noise_rate = estimate.pop("noise_rate")
    names = data.names
    suggested = everyone.argmax(1)
    ids = data.example_ids(index[flagged])
    rows = [{"index": int(index[r]), "id": i, "given_label": names[given[r]], "suggested_label": names[suggested[r]],
             "label_quality": float(f"{quality[r]:.6g}")} for r, i in zip(flagged, ids)]  # fmt: skip
    _write_csv(out / "label_issues.csv", rows)
    if data.texts is not None:  # the page shows each suspect's text, not its TF-IDF
        texts, shown = data.example_texts(index[flagged]), None
    else:
        texts, shown = [None] * len(rows), data.source_values(x[flagged])
    html = write_review(out / "report.html", title=f"{job.dataset} {job.dataset_params.get('path') or ''}".strip(),
                        audit_key=f"{_digest(x, given)} {out.resolve()}", names=names,
                        rows=[{**r, "text": t} for r, t in zip(rows, texts)], inputs=shown, noise_matrix=matrix,
                        summary={"examples": len(given), "estimated_noise_rate": noise_rate,
                                 "estimated_wrong_labels": "{count} ({interval[0]}–{interval[1]})".format(**estimate)})  # fmt: skip
    order = np.argsort(index, kind="stable")
    arrays = {"index": index[order], "id": np.asarray(data.example_ids(index[order]), dtype=str), "given": given[order],
              "label_quality": quality[order], "mean_probs": everyone[order].astype(np.float32),
              "pred_probs": pred_probs[order].astype(np.float32)}  # fmt: skip
    atomic_write(out / "pred_probs.npz", lambda p: write_npz(p, arrays))
    counts = np.bincount(given, minlength=len(names))
    issues = np.bincount(given[flagged], minlength=len(names))
    resolved = job.resolved()
    loss_params = resolved.loss_params if selection is None else {**resolved.loss_params, **selection["chosen"]["loss_params"]}
    summary = {
        "dataset": job.dataset, "dataset_params": job.dataset_params, "examples": int(len(given)),
        "classes": names, "folds": folds, "ensemble": ensemble, "flag": flag, "loss": job.loss, "loss_params": loss_params,
        "model": model,
        "epochs": resolved.config.epochs, "seed": job.seed, "issues": int(len(flagged)),
        "selection": None if selection is None else {"chosen": selection["chosen"], "candidates": selection["candidates"],
                                                     "held_out_accuracy": selection["held_out_accuracy"]},
        "estimated_noise_rate": noise_rate, "estimated_issues": estimate,
        "per_class": [{"class": n, "examples": int(c), "issues": int(i), "noise_rate": float(1 - matrix[k, k])}
                      for k, (n, c, i) in enumerate(zip(names, counts, issues))],
        "noise_matrix": matrix.tolist(), "top": rows[:TOP],
        "files": {"csv": str(out / "label_issues.csv"),
                  "pred_probs": str(out / "pred_probs.npz"), "html": str(html)},
        "seconds": time.perf_counter() - start,
    }  # fmt: skip
    atomic_write(out / "audit.json", lambda p: p.write_text(json.dumps(summary, indent=1)))
    return summary
