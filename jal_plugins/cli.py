"""The ``jal-plugins`` command line: list, noise, bound, run, demo, bench, audit.

The only module that parses arguments or prints for the user; the library never imports it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from jal_plugins import checks
from jal_plugins.specs import parse_kvs, parse_spec


class UsageError(Exception):
    """A bad command line: reported on one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), like every other error of the tool."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _arg(check):
    """An argparse ``type`` that parses a number and validates it with ``check(name, value)``."""

    def parse(text):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        try:
            return check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


positive_int = _arg(lambda v: checks.positive_int("value", v))


def _stack_size(value):
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"must be a positive integer or auto, got {value!r}")
    return value


stack_size = _arg(_stack_size)
positive = _arg(lambda v: checks.positive("value", v))
classes = _arg(lambda v: checks.integer("classes", v, low=2))
non_negative_int = _arg(lambda v: checks.integer("seed", v, low=0))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_list(args) -> int:
    from jal_plugins.plugins import SINGULAR, host

    for kind in SINGULAR:
        entries = host()[kind].entries.values()
        rows = [[e.name, ", ".join(e.aliases), e.provider, e.version] for e in entries]
        print(f"{kind.replace('_', ' ').capitalize()} ({len(rows)})")
        print(_table(rows, ["name", "aliases", "provider", "version"]))
        print()
    return 0


def _noise_model(spec: str):
    from jal_plugins import create_noise_model

    name, params = parse_spec(spec)
    return create_noise_model(name, **params)


def _output_file(path: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"--out {path!r} is a folder; give a file name")
    if not out.parent.is_dir():
        raise ValueError(f"--out {path!r}: {str(out.parent)!r} is not an existing folder")
    return out


def cmd_noise(args) -> int:
    import numpy as np

    from jal_plugins.labelfiles import read_labels
    from jal_plugins.noise import noise_rates, realized_transition_matrix

    out = _output_file(args.out) if args.out else None
    clean = read_labels(args.labels, args.key)
    features = np.load(args.features) if args.features else None
    model = _noise_model(args.noise)
    noisy = model.apply(clean, num_classes=args.classes, seed=args.seed, features=features)
    k = args.classes or int(max(clean.max(), noisy.max())) + 1
    if out:
        if out.suffix == ".npz":
            np.savez(out, noisy_label=noisy, clean_label=clean)
        else:
            np.save(out, noisy)
    rates = noise_rates(clean, noisy, k)
    print(f"{model!r} on {clean.size} labels, {k} classes, seed {args.seed}")
    print(f"overall noise rate: {np.mean(clean != noisy):.4%}")
    print("per-class noise rate: " + " ".join(f"{r:.3f}" for r in rates))
    if k <= 20:
        print("realised T[true, noisy]:")
        for row in realized_transition_matrix(clean, noisy, k):
            print("  " + " ".join(f"{v:.3f}" for v in row))
    if out:
        print(f"wrote {out}")
    return 0


def cmd_bound(args) -> int:
    from jal_plugins import list_losses
    from jal_plugins.theory import amse_min_a, asymmetric_for_noise

    t = _noise_model(args.noise).transition_matrix(args.classes)
    if t is None:
        raise ValueError(f"{args.noise!r} has no transition matrix; use the realised one of a labelled sample")
    a = amse_min_a(t, q=args.q)
    print(f"noise {args.noise} over {args.classes} classes")
    print(f"smallest a for AMSE (q={args.q:g}): {a:.4g}" if a < float("inf") else "no a works: clean-label dominance fails")
    verdicts = {name: asymmetric_for_noise(name, t) for name in args.losses or list(list_losses())}
    print("asymmetric (noise-tolerant) at default parameters: " + (", ".join(n for n, v in verdicts.items() if v) or "none"))
    print("not asymmetric: " + (", ".join(n for n, v in verdicts.items() if not v) or "none"))
    return 0


# --X-param KEY=VALUE options -> the Job field that collects them
PARAM_OPTIONS = {"loss_param": "loss_params", "model_param": "model_params", "dataset_param": "dataset_params",
                 "method_param": "method_params"}  # fmt: skip


def _run_jobs(args, jobs, out: Path | None):
    from jal_plugins.runner import run_jobs

    progress = not args.json and sys.stderr.isatty()
    return run_jobs(jobs, out, progress=progress, workers=_workers(args), stack=args.stack, log=_log,
                    executor=args.executor, address=args.address, tensorboard=args.tensorboard)  # fmt: skip


def _workers(args) -> int | None:
    """``--workers``; by default the command's own count, or one process per core when training on
    the CPU; under Ray, the cluster decides (None)."""
    if args.workers or args.executor == "ray":
        return args.workers
    if args.local_workers:
        return args.local_workers
    return (os.cpu_count() or 1) if checks.device(args.device).type == "cpu" else 1


def _status(records) -> int:
    """Exit status of a finished grid: 1 when a run diverged (after every other run was recorded)."""
    diverged = [r for r in records if r.get("status") == "diverged"]
    for r in diverged:
        _log(f"diverged: {r['dataset']} {r['noise']} {r['method']} {r['loss']} seed {r['seed']}: {r['error']}")
    return 1 if diverged else 0


def _config(args) -> dict:
    """Engine fields given on the command line: ``--set KEY=VALUE`` and the ``--epochs``-style shortcuts."""
    config = parse_kvs(args.set)
    for name in ("epochs", "batch_size", "lr"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    return config


def cmd_run(args) -> int:
    from jal_plugins.job import Job
    from jal_plugins.report import matrix
    from jal_plugins.runner import distributed

    config = _config(args)
    params = {field: parse_kvs(getattr(args, option)) for option, field in PARAM_OPTIONS.items()}
    losses = [parse_spec(spec, first=None) for spec in args.loss]  # jal-ce,a=auto: parameters of that loss
    if args.tune:  # every loss searches its space, keeping what the user fixed
        losses = [(loss, params if "auto" in params.values() else {**params, "auto": True}) for loss, params in losses]
    jobs = [
        Job(dataset=args.dataset, noise=noise, loss=loss, seed=seed, preset=args.preset, model=args.model,
            method=method, config=config, device=args.device,
            **{**params, "loss_params": {**params["loss_params"], **loss_params}})  # fmt: skip
        for noise in args.noise
        for method in args.method
        for loss, loss_params in losses
        for seed in args.seed
    ]
    records = _run_jobs(args, jobs, Path(args.out) if args.out else None)
    if distributed()[0] != 0:
        return 0
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print(matrix(records, cols=("method", "loss") if len({r["method"] for r in records}) > 1 else ("loss",)))
    return _status(records)


def _suite(args, name: str, out: Path, data: str | None = None, dataset_params: dict | None = None):
    """Train suite ``name`` into ``out``: its records, its report (``bench.report``) and the paper's figures."""
    from jal_plugins import bench

    jobs, labels, paper = bench.suite_jobs(name, args.seeds, args.device, data or "data", dataset_params or {},
                                           tune=args.tune)  # fmt: skip
    start = time.perf_counter()
    records = _run_jobs(args, jobs, out)
    return records, bench.report(name, records, labels, paper, time.perf_counter() - start), paper


def _show_suite(args, records, as_json, heading: str, table: str, tail: str, chart) -> int:
    if args.json:
        print(json.dumps(as_json, indent=1))
        return _status(records)
    print(f"{heading}\n")
    print(table)
    print(f"\n{tail}")
    print(f"chart: {chart}" if chart else "chart skipped: pip install 'jal-plugins[plot]' for matplotlib")
    return _status(records)


def cmd_bench(args) -> int:
    from jal_plugins import bench

    if args.suite == "list":
        for name, description in bench.list_suites().items():
            print(f"{name:<20} {description}")
        return 0
    out = Path(args.out or f"jal-bench-{Path(args.suite).stem}")
    data = args.data or os.environ.get("JAL_PLUGINS_DATA", "data")
    records, result, paper = _suite(args, args.suite, out, data, parse_kvs(args.dataset_param))
    chart = bench.write_report(out, result, paper)
    return _show_suite(
        args, records, {k: v for k, v in result.items() if k not in ("table", "shown")},
        f"{args.suite}: test accuracy (%) after the last epoch, mean ± std over seeds", result["table"],
        f"{len(records)} runs, {result['seconds']:.0f} s this call on {result['device']}; results in {out}", chart,
    )  # fmt: skip


def cmd_demo(args) -> int:
    from jal_plugins.report import bar_chart, matrix

    out = Path(args.out)
    records, result, _ = _suite(args, "demo", out)
    chart = bar_chart(result["shown"], ("noise",), ("loss",), out / "demo.png", "digits, label noise: test accuracy (%)")
    return _show_suite(
        args, records, records,
        f"Test accuracy (%) on scikit-learn digits, mean ± std over {result['seeds']} seeds", matrix(result["shown"]),
        f"{len(records)} runs in {result['seconds']:.0f} s; results in {out / 'results.jsonl'}", chart,
    )  # fmt: skip


def _audit_report(s: dict) -> str:
    """The printed summary of an audit: issues, noise per class, the noise matrix, the worst labels."""
    names = s["classes"]
    lines = [
        f"{s['dataset']}: {s['examples']} labelled examples, {len(names)} classes; out-of-sample probabilities from "
        f"{s['folds']} folds of {s['model']}" + (f" (x{s['ensemble']}, averaged)" if s["ensemble"] > 1 else "")
        + f" trained with {s['loss']} for {s['epochs']} epochs"
        + (f"; a = {s['loss_params']['a']:g} chosen on held-out labels" if s.get("selection") else ""),
        f"label issues: {s['issues']} ({s['issues'] / s['examples']:.1%} of the examples), "
        f"worst first in {s['files']['csv']}",
        "estimated wrong labels: {count} (95 % interval {interval[0]}–{interval[1]})".format(**s["estimated_issues"])
        + f"; flagged: {'that many' if s['flag'] == 'auto' else s['flag']}, the worst-ranked",
        f"estimated noise rate: {s['estimated_noise_rate']:.1%}",
        "",
        _table([[c["class"], c["examples"], c["issues"], f"{c['noise_rate']:.1%}"] for c in s["per_class"]],
               ["class", "examples", "issues", "est. noise rate"]),
        "",
    ]  # fmt: skip
    if len(names) <= 20:
        rows = [[name] + [f"{v:.2f}" for v in row] for name, row in zip(names, s["noise_matrix"])]
        lines += ["estimated noise matrix T[true, given] (rows: true class, columns: given label)",
                  _table(rows, ["true \\ given"] + names), ""]  # fmt: skip
    else:
        summary = Path(s["files"]["csv"]).parent / "audit.json"
        lines += [f"estimated noise matrix ({len(names)}x{len(names)}): in {summary}", ""]
    if s["top"]:
        rows = [[r["index"], r["id"], r["given_label"], r["suggested_label"], r["label_quality"]] for r in s["top"]]
        lines += [f"worst {len(rows)}:", _table(rows, ["index", "id", "given", "suggested", "label quality"]), ""]
    lines.append(f"review page: {s['files']['html']} (open it in a browser; decisions export as decisions.csv)")
    return "\n".join(lines)


def cmd_audit(args) -> int:
    from jal_plugins.audit import audit, audit_job, defaults

    out = Path(args.out)
    params = {field: parse_kvs(getattr(args, option)) for option, field in PARAM_OPTIONS.items()
              if option != "method_param"}  # fmt: skip
    job = audit_job(args.dataset, out, loss=args.loss, config=_config(args), seed=args.seed, preset=args.preset,
                    model=args.model, device=args.device, **params)  # fmt: skip
    folds = args.folds or defaults(job.resolved().model)["folds"]  # the bar's label
    bar = None

    def progress(epoch, epochs):
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=epochs, initial=epoch - 1, desc=f"{folds} folds", unit="epoch", file=sys.stderr)
        bar.update(1)

    try:
        summary = audit(job, out, folds, progress=progress if sys.stderr.isatty() and not args.json else None,
                        ensemble=args.ensemble, flag=args.flag)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps(summary, indent=1) if args.json else _audit_report(summary))
    return 0


def _recipe_options(p) -> None:
    """What changes a run's recipe: network, preset, engine fields, loss/model/dataset parameters."""
    p.add_argument("--preset", help="loss/regularisation preset (default: the dataset recipe's)")
    p.add_argument("--model", help="registered network (default: the dataset recipe's)")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=positive)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any engine field, e.g. clip=null, l1=5e-5")
    p.add_argument("--loss-param", action="append", metavar="KEY=VALUE")
    p.add_argument("--model-param", action="append", metavar="KEY=VALUE")
    p.add_argument("--dataset-param", action="append", metavar="KEY=VALUE", help="e.g. path=data.npz")


def _training_options(p, out_help: str, out_default=None, workers_default=None) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default=out_default, help=out_help)
    default = "one per core on the CPU, 1 on a GPU" if workers_default is None else workers_default
    p.add_argument("--workers", type=positive_int,
                   help=f"processes training at once, each one stack or run at a time (default: {default}); "
                        "with --executor ray, the most Ray tasks at once (default: the cluster's CPUs, or GPUs "
                        "for GPU runs)")  # fmt: skip
    p.set_defaults(local_workers=workers_default)
    p.add_argument("--stack", type=stack_size, default="auto", metavar="N|auto",
                   help="train up to N compatible runs (same data, network, epochs, batch size) in one "
                        "forward/backward pass; auto (default) times the network and picks the fastest size, "
                        "1 trains every run alone. With --workers, the runs are split so that every process "
                        "trains stacks of its own (N is then an upper bound). Tuned runs (auto) stack their "
                        "candidates, and train as one unit per process")  # fmt: skip
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local (default): this machine's processes; ray: one Ray task per stack or run, on the "
                        "cluster at --address (pip install 'jal-plugins[ray]'; --out must be shared by its nodes)")
    p.add_argument("--address", metavar="auto|HOST:PORT|ray://HOST:PORT",
                   help="with --executor ray: the cluster; auto (default) joins RAY_ADDRESS or a cluster started "
                        "here with `ray start --head`, else starts a local one")
    p.add_argument("--tensorboard", action="store_true",
                   help="write each run's loss, accuracies and learning rate per epoch to OUT/tensorboard "
                        "(pip install 'jal-plugins[tensorboard]')")
    p.add_argument("--tune", action="store_true",
                   help="every loss chooses its parameters (and regularisation) on held-out noisy labels, from its "
                        "search space in registry.toml, with the same number of candidates (as LOSS,auto)")
    p.add_argument("--json", action="store_true", help="print the records as JSON")


def _debug_option(parser, default) -> None:
    parser.add_argument("--debug", action="store_true", default=default, help="show the traceback of an error")


def build_parser() -> Parser:
    parser = Parser(prog="jal-plugins", description=__doc__.splitlines()[0])
    _debug_option(parser, False)
    # every subcommand takes --debug too; SUPPRESS so its default does not undo a --debug given before it
    common = Parser(add_help=False)
    _debug_option(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name, **kwargs):
        return sub.add_parser(name, parents=[common], **kwargs)

    command("list", help="list registered losses, noise models, networks, datasets and methods").set_defaults(func=cmd_list)

    p = command("noise", help="apply a noise model to a label file")
    p.add_argument("--labels", required=True, help="clean labels: .npy, .npz or CIFAR-N .pt")
    p.add_argument("--key", help="array inside the label file (e.g. clean_label)")
    p.add_argument("--noise", required=True, help="SPEC: NAME[:RATE][,KEY=VALUE...], e.g. symmetric:0.8")
    p.add_argument("--classes", type=classes, help="number of classes (default: max label + 1)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--features", help=".npy of per-sample features (instance-dependent noise)")
    p.add_argument("--out", help="write the noisy labels (.npy, or .npz with clean_label/noisy_label)")
    p.set_defaults(func=cmd_noise)

    p = command("bound", help="smallest AMSE `a` for a noise, and which losses are asymmetric for it")
    p.add_argument("--noise", required=True, help="SPEC, e.g. symmetric:0.8 or pairflip:0.4")
    p.add_argument("--classes", type=classes, required=True)
    p.add_argument("--q", type=positive, default=2.0, help="AMSE exponent (default 2)")
    p.add_argument("--losses", nargs="+", help="losses to check (default: all registered)")
    p.set_defaults(func=cmd_bound)

    p = command("run", help="train dataset × noise × loss × seed and report test accuracy")
    p.add_argument("--dataset", default="digits", help="registered dataset (default: digits)")
    p.add_argument("--noise", nargs="+", default=["none"], help="SPEC: none, symmetric:0.4, asymmetric:0.4, ...")
    p.add_argument("--loss", nargs="+", default=["jal-ce"],
                   help="NAME[,KEY=VALUE...], e.g. ce gce,q=auto nce+rce,auto jal-ce,a=10 (KEY=auto chooses that "
                        "parameter on held-out noisy labels, a bare auto every parameter)")
    p.add_argument("--method", nargs="+", default=["erm"], help="training method: erm, co-teaching, cleanlab-prune, ...")
    p.add_argument("--method-param", action="append", metavar="KEY=VALUE", help="e.g. forget_rate=0.4, folds=4")
    p.add_argument("--seed", type=non_negative_int, nargs="+", default=[0])
    _recipe_options(p)
    _training_options(p, "folder for results.jsonl, curves and checkpoints (rerun to resume)", workers_default=1)
    p.set_defaults(func=cmd_run)

    p = command("demo", help="robust losses vs CE on scikit-learn's digits under label noise")
    p.add_argument("--seeds", type=positive_int, default=3)
    _training_options(p, "results folder (default: jal-demo; rerun to resume)", "jal-demo")
    p.set_defaults(func=cmd_demo)

    p = command("bench", help="run a benchmark suite from registry.toml beside the paper's numbers")
    p.add_argument("suite", help="a suite of registry.toml (see: bench list) or a .toml file with one suite")
    p.add_argument("--seeds", type=positive_int, help="seeds per cell (default: the suite's)")
    p.add_argument("--data", help="folder replacing {data} in the suite's paths (default: $JAL_PLUGINS_DATA or ./data)")
    p.add_argument("--dataset-param", action="append", metavar="KEY=VALUE",
                   help="override, e.g. source=c10.npz, or cifar10n.source=c10.npz for one dataset")  # fmt: skip
    _training_options(p, "results folder (default: jal-bench-SUITE; rerun to resume)")
    p.set_defaults(func=cmd_bench)

    p = command("audit", help="which labels are wrong? K-fold out-of-sample probabilities, then cleanlab")
    p.add_argument("--dataset", required=True, help="registered dataset: imagefolder, hf, table, npz, cifar10n, ...")
    p.add_argument("--loss", help="registered loss of the fold networks (default: registry.toml [audit], jal-ce)")
    p.add_argument("--folds", type=_arg(lambda v: checks.integer("folds", v, low=2)),
                   help="cross-validation folds, trained as one stack (default: registry.toml's [audit] for the network)")  # fmt: skip
    p.add_argument("--ensemble", type=positive_int,
                   help="networks a fold, their predictions averaged (default: registry.toml's [audit] for the network)")  # fmt: skip
    p.add_argument("--flag", default="auto",
                   help="how many to flag, worst first: auto (the estimated number of wrong labels), a count N, "
                        "or a fraction in (0, 1)")  # fmt: skip
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the folds and their networks")
    _recipe_options(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", required=True, help="folder for label_issues.csv, report.html, audit.json, pred_probs.npz, the "
                   "checkpoint (rerun to resume) and the data cache (out/cache)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_audit)
    return parser


def _expected() -> tuple:
    """What a user's input causes: one line, exit 2. Anything else is a bug of ours (or a plugin's)."""
    from jal_plugins.checks import MissingExtra
    from jal_plugins.plugins import UnknownNameError

    return ValueError, OSError, UsageError, UnknownNameError, MissingExtra


def _warning(message, category, filename, lineno, line=None):
    return f"jal-plugins: warning: {message}\n"


class _Progress(logging.Handler):
    """The runner's per-epoch progress (``jal_plugins.progress``) as one line rewritten in place."""

    def emit(self, record):
        end = getattr(record, "done", False)
        sys.stderr.write("\n" if end else f"\r{record.getMessage()}")
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    import warnings

    from jal_plugins.engine import Diverged

    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    command = next((a for a in argv if not a.startswith("-")), "")
    shown = warnings.formatwarning
    if not debug:
        warnings.formatwarning = _warning  # one line, like the errors
    progress = logging.getLogger("jal_plugins.progress")
    handler = _Progress()
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    progress.propagate = False
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except Exception as exc:  # one line for the user; --debug shows where it came from
        if debug:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        text = str(message).replace("\n", " ")
        if isinstance(exc, _expected()):
            print(f"jal-plugins {command}: error: {text}", file=sys.stderr)
            return 2
        if isinstance(exc, Diverged):  # the data and settings, not the code: the message names the fix
            print(f"jal-plugins {command}: error: {text}", file=sys.stderr)
            return 1
        print(f"jal-plugins {command}: internal error: {type(exc).__name__}: {text} (run with --debug for the traceback)",
              file=sys.stderr)  # fmt: skip
        return 1
    finally:
        warnings.formatwarning = shown
        progress.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
