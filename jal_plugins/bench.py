"""``jal-plugins bench SUITE``: a grid declared in ``registry.toml``, measured beside the paper's numbers."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from jal_plugins.checks import positive_int
from jal_plugins.job import Job, canonical_noise
from jal_plugins.plugins import normalize
from jal_plugins.registry import load, section
from jal_plugins.specs import parse_spec
from jal_plugins.report import atomic_write, bar_chart, comparison, comparison_table

KEYS = ("dataset", "noise", "method", "loss")


def list_suites() -> dict[str, str]:
    """Declared suites: ``{name: description}``."""
    return {name: s.get("description", "") for name, s in load().get("suites", {}).items()}


def _fill(value, data: str):
    """Replace ``{data}`` in every string of ``value`` (the folder holding the data files)."""
    if isinstance(value, str):
        return value.replace("{data}", data)
    if isinstance(value, dict):
        return {k: _fill(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, data) for v in value]
    return value


def load_suite(name: str) -> tuple[str, dict]:
    """A suite declared in ``registry.toml``, or the one suite of a TOML file (a path ending in .toml)."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"suite file {name!r} does not exist")
        try:
            with path.open("rb") as fh:
                suites = tomllib.load(fh).get("suites", {})
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"suite file {name!r} is not valid TOML: {exc}") from None
        if len(suites) != 1:
            raise ValueError(f"suite file {name!r} must declare exactly one [suites.NAME] table, found {sorted(suites)}")
        return next(iter(suites.items()))
    return name, section("suites", name, "suite")


def _overrides(params: dict, dataset: str) -> dict:
    """``KEY`` applies to every dataset, ``DATASET.KEY`` to that dataset only."""
    out = {}
    for key, value in params.items():
        scope, dot, name = key.rpartition(".")
        if not dot or normalize(scope) == normalize(dataset):
            out[name] = value
    return out


def _pairs(grid: dict) -> list[tuple[str, str]]:
    """(method, loss spec) pairs: ``methods`` × ``losses``, or ``methods = {method = [losses]}``."""
    methods = grid.get("methods", ["erm"])
    if isinstance(methods, dict):
        return [(method, loss) for method, losses in methods.items() for loss in losses]
    return [(method, loss) for method in methods for loss in grid["losses"]]


def suite_jobs(name: str, seeds: int | None = None, device: str = "auto", data: str = "data",
               dataset_params: dict | None = None,
               tune: bool = False) -> tuple[list[Job], dict[str, str], dict[tuple, float]]:  # fmt: skip
    """The suite's jobs, its noise labels (spec -> label) and the paper's numbers keyed like ``KEYS``.

    ``tune`` (or ``tune = true`` in a grid block) searches every loss's parameters (``auto``)."""
    name, spec = load_suite(name)
    if not spec.get("grid"):
        raise ValueError(f"suite {name!r} has no [[grid]] blocks")
    n_seeds = positive_int("seeds", seeds if seeds is not None else spec.get("seeds", 3))
    jobs, labels = [], {}
    for grid in _fill(spec["grid"], data):
        params = {**grid.get("dataset_params", {}), **_overrides(dataset_params or {}, grid["dataset"])}
        for noise in grid["noises"]:
            noise = noise if isinstance(noise, dict) else {"label": noise, "spec": noise}
            noise_spec = canonical_noise(noise["spec"])
            labels[noise_spec] = noise["label"]
            for method, loss_spec in _pairs(grid):
                loss, spec_params = parse_spec(loss_spec, first=None)
                if (tune or grid.get("tune", False)) and "auto" not in spec_params.values():
                    spec_params["auto"] = True
                jobs += [
                    Job(grid["dataset"], noise_spec, loss, seed, preset=grid.get("preset"),
                        model=grid.get("model"), method=method, config=dict(grid.get("config", {})),
                        loss_params={**grid.get("loss_params", {}).get(loss, {}), **spec_params},
                        model_params=dict(grid.get("model_params", {})), dataset_params=params, device=device)
                    for seed in range(n_seeds)
                ]  # fmt: skip
    return jobs, labels, paper_figures(spec)[0]


def paper_figures(spec: dict) -> tuple[dict[tuple, float], dict[tuple, str]]:
    """A suite's published numbers keyed like ``KEYS``, and the note of those that have one.

    ``paper.DATASET`` maps each loss to ``{noise: %}`` for ``erm``; a table that maps losses to such
    tables belongs to the method it is named after and may carry a ``note`` (e.g. "best epoch").
    """
    figures, notes = {}, {}
    for dataset, table in spec.get("paper", {}).items():
        for name, entry in table.items():
            by_method = any(isinstance(v, dict) for v in entry.values())
            method, by_loss = (name, entry) if by_method else ("erm", {name: entry})
            for loss, by_noise in by_loss.items():
                if loss == "note":
                    continue
                for noise, value in by_noise.items():
                    figures[(dataset, noise, method, loss)] = value
                    if by_method and "note" in entry:
                        notes[(dataset, noise, method, loss)] = entry["note"]
    return figures, notes


def report(name: str, records: list[dict], labels: dict[str, str], paper: dict, seconds: float) -> dict:
    """The suite's comparison rows (ours beside the paper) and its records, as written to bench.json."""
    shown = [{**r, "noise": labels.get(r["noise"], r["noise"])} for r in records]
    rows = comparison(shown, KEYS, paper, paper_figures(load_suite(name)[1])[1])
    return {"suite": name, "seeds": len({r["seed"] for r in records}), "seconds": round(seconds, 1),
            "device": records[0]["device"] if records else None, "rows": rows, "records": records,
            "table": comparison_table(rows, KEYS), "shown": shown}  # fmt: skip


def write_report(out: Path, report: dict, paper: dict) -> Path | None:
    """``bench.json``, ``bench.md`` and ``bench.png`` (None when matplotlib is missing) under ``out``."""
    saved = {k: v for k, v in report.items() if k not in ("table", "shown")}
    atomic_write(out / "bench.json", lambda p: p.write_text(json.dumps(saved, indent=1)))
    atomic_write(out / "bench.md", lambda p: p.write_text(report["table"] + "\n"))
    return bar_chart(report["shown"], ("dataset", "noise"), ("method", "loss"), out / "bench.png", report["suite"], paper)
