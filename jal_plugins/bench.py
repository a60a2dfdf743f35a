"""``jal-plugins bench SUITE``: a grid declared in ``registry.toml``, measured beside the paper's numbers."""

from __future__ import annotations

import json
import os
import sys
import time
import tomllib
from pathlib import Path

from jal_plugins.plugins import normalize
from jal_plugins.presets import registry, section
from jal_plugins.report import atomic_write, bar_chart, comparison, comparison_table
from jal_plugins.cli import parse_kv
from jal_plugins.runner import Job, run_jobs

KEYS = ("dataset", "noise", "method", "loss")


def list_suites() -> dict[str, str]:
    """Declared suites: ``{name: description}``."""
    return {name: s.get("description", "") for name, s in registry().get("suites", {}).items()}


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
        with path.open("rb") as fh:
            suites = tomllib.load(fh).get("suites", {})
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
    """(method, loss) pairs: ``methods`` × ``losses``, or ``methods = {method = [losses]}``."""
    methods = grid.get("methods", ["erm"])
    if isinstance(methods, dict):
        return [(method, loss) for method, losses in methods.items() for loss in losses]
    return [(method, loss) for method in methods for loss in grid["losses"]]


def suite_jobs(name: str, seeds: int | None = None, device: str = "auto", data: str = "data",
               dataset_params: dict | None = None) -> tuple[list[Job], dict[str, str], dict[tuple, float]]:  # fmt: skip
    """The suite's jobs, its noise labels (spec -> label) and the paper's numbers keyed like ``KEYS``."""
    name, spec = load_suite(name)
    if not spec.get("grid"):
        raise ValueError(f"suite {name!r} has no [[grid]] blocks")
    n_seeds = seeds if seeds is not None else spec.get("seeds", 3)
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {n_seeds!r}")
    jobs, labels = [], {}
    for grid in _fill(spec["grid"], data):
        params = {**grid.get("dataset_params", {}), **_overrides(dataset_params or {}, grid["dataset"])}
        for noise in grid["noises"]:
            noise = noise if isinstance(noise, dict) else {"label": noise, "spec": noise}
            labels[noise["spec"]] = noise["label"]
            for method, loss in _pairs(grid):
                jobs += [
                    Job(grid["dataset"], noise["spec"], loss, seed, preset=grid.get("preset"),
                        model=grid.get("model"), method=method, config=dict(grid.get("config", {})),
                        model_params=dict(grid.get("model_params", {})), dataset_params=params, device=device)
                    for seed in range(n_seeds)
                ]  # fmt: skip
    paper = {
        (dataset, noise, "erm", loss): value
        for dataset, by_loss in spec.get("paper", {}).items()
        for loss, by_noise in by_loss.items()
        for noise, value in by_noise.items()
    }
    return jobs, labels, paper


def cmd_bench(args) -> int:
    from jal_plugins.engine import resolve_device

    if args.suite == "list":
        for name, description in list_suites().items():
            print(f"{name:<20} {description}")
        return 0
    data = args.data or os.environ.get("JAL_PLUGINS_DATA", "data")
    overrides = dict(parse_kv(s) for s in args.dataset_param or [])
    jobs, labels, paper = suite_jobs(args.suite, args.seeds, args.device, data, overrides)
    out = Path(args.out or f"jal-bench-{Path(args.suite).stem}")
    workers = args.workers or (os.cpu_count() or 1 if resolve_device(args.device).type == "cpu" else 1)
    start = time.perf_counter()
    records = run_jobs(jobs, out, progress=not args.json and sys.stderr.isatty(), workers=workers)
    elapsed = time.perf_counter() - start
    shown = [{**r, "noise": labels.get(r["noise"], r["noise"])} for r in records]
    rows = comparison(shown, KEYS, paper)
    table = comparison_table(rows, KEYS)
    report = {"suite": args.suite, "seeds": len({r["seed"] for r in records}), "seconds": round(elapsed, 1),
              "device": records[0]["device"] if records else None, "rows": rows, "records": records}  # fmt: skip
    atomic_write(out / "bench.json", lambda p: p.write_text(json.dumps(report, indent=1)))
    atomic_write(out / "bench.md", lambda p: p.write_text(table + "\n"))
    chart = bar_chart(shown, ("dataset", "noise"), ("method", "loss"), out / "bench.png", args.suite, paper)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{args.suite}: test accuracy (%) after the last epoch, mean ± std over seeds\n")
    print(table)
    print(f"\n{len(records)} runs, {elapsed:.0f} s this call on {report['device']}; results in {out}")
    print(f"chart: {chart}" if chart else "chart skipped: pip install 'jal-plugins[plot]' for matplotlib")
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite from registry.toml beside the paper's numbers")
    p.add_argument("suite", help="a suite of registry.toml (see: bench list) or a .toml file with one suite")
    p.add_argument("--seeds", type=int, help="seeds per cell (default: the suite's)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", help="results folder (default: jal-bench-SUITE; rerun to resume)")
    p.add_argument("--data", help="folder replacing {data} in the suite's paths (default: $JAL_PLUGINS_DATA or ./data)")
    p.add_argument("--dataset-param", action="append", metavar="KEY=VALUE",
                   help="override, e.g. source=c10.npz, or cifar10n.source=c10.npz for one dataset")
    p.add_argument("--workers", type=int, help="parallel CPU processes (default: one per core on CPU)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_bench)
