"""The ``jal-plugins`` command line: list, noise, bound, run, demo, bench."""

from __future__ import annotations

import argparse
import json
import sys


def parse_value(text: str):
    """A command-line value: JSON when it parses (numbers, lists, dicts), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_spec(spec: str, first: str = "rate") -> tuple[str, dict]:
    """``NAME[:VALUE][,KEY=VALUE...]`` -> (name, params); ``VALUE`` fills the parameter ``first``."""
    head, *pairs = spec.split(",")
    name, _, value = head.partition(":")
    if not name.strip():
        raise ValueError(f"malformed spec {spec!r}: expected NAME[:{first.upper()}][,KEY=VALUE...]")
    params = {}
    if value:
        params[first] = parse_value(value)
        if first == "rate" and not isinstance(params[first], (int, float)):
            raise ValueError(f"malformed spec {spec!r}: rate {value!r} is not a number")
    for pair in pairs:
        key, eq, val = pair.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"malformed spec {spec!r}: {pair!r} is not KEY=VALUE")
        params[key.strip()] = parse_value(val)
    return name.strip(), params


def parse_kv(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> (key with dashes as underscores, parsed value)."""
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key.replace("-", "_"), parse_value(value)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def cmd_list(args) -> int:
    from jal_plugins.plugins import host

    titles = {"losses": "Losses", "noise_models": "Noise models", "models": "Models", "datasets": "Datasets",
              "methods": "Methods"}  # fmt: skip
    for kind, title in titles.items():
        entries = host()[kind].entries.values()
        rows = [[e.name, ", ".join(e.aliases), e.provider, e.version] for e in entries]
        print(f"{title} ({len(rows)})")
        print(_table(rows, ["name", "aliases", "provider", "version"]))
        print()
    return 0


def _noise_model(spec: str):
    from jal_plugins import create_noise_model

    name, params = parse_spec(spec)
    return create_noise_model(name, **params)


def cmd_noise(args) -> int:
    import numpy as np

    from jal_plugins.labelfiles import read_labels
    from jal_plugins.noise import noise_rates, realized_transition_matrix

    clean = read_labels(args.labels, args.key)
    features = np.load(args.features) if args.features else None
    model = _noise_model(args.noise)
    noisy = model.apply(clean, num_classes=args.classes, seed=args.seed, features=features)
    k = args.classes or int(max(clean.max(), noisy.max())) + 1
    if args.out:
        if args.out.endswith(".npz"):
            np.savez(args.out, noisy_label=noisy, clean_label=clean)
        else:
            np.save(args.out, noisy)
    rates = noise_rates(clean, noisy, k)
    print(f"{model!r} on {clean.size} labels, {k} classes, seed {args.seed}")
    print(f"overall noise rate: {np.mean(clean != noisy):.4%}")
    print("per-class noise rate: " + " ".join(f"{r:.3f}" for r in rates))
    if k <= 20:
        t = realized_transition_matrix(clean, noisy, k)
        print("realised T[true, noisy]:")
        for row in t:
            print("  " + " ".join(f"{v:.3f}" for v in row))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_bound(args) -> int:
    from jal_plugins import list_losses
    from jal_plugins.theory import amse_min_a, asymmetric_for_noise

    model = _noise_model(args.noise)
    t = model.transition_matrix(args.classes)
    if t is None:
        raise ValueError(f"{args.noise!r} has no transition matrix; use the realised one of a labelled sample")
    a = amse_min_a(t, q=args.q)
    print(f"noise {args.noise} over {args.classes} classes")
    print(f"smallest a for AMSE (q={args.q:g}): {a:.4g}" if a < float("inf") else "no a works: clean-label dominance fails")
    names = args.losses or list(list_losses())
    verdicts = {name: asymmetric_for_noise(name, t) for name in names}
    print("asymmetric (noise-tolerant) at default parameters: " + (", ".join(n for n, v in verdicts.items() if v) or "none"))
    print("not asymmetric: " + (", ".join(n for n, v in verdicts.items() if not v) or "none"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jal-plugins", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="list registered losses, noise models, networks, datasets and methods").set_defaults(func=cmd_list)

    p = sub.add_parser("noise", help="apply a noise model to a label file")
    p.add_argument("--labels", required=True, help="clean labels: .npy, .npz or CIFAR-N .pt")
    p.add_argument("--key", help="array inside the label file (e.g. clean_label)")
    p.add_argument("--noise", required=True, help="SPEC: NAME[:RATE][,KEY=VALUE...], e.g. symmetric:0.8")
    p.add_argument("--classes", type=int, help="number of classes (default: max label + 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--features", help=".npy of per-sample features (instance-dependent noise)")
    p.add_argument("--out", help="write the noisy labels (.npy, or .npz with clean_label/noisy_label)")
    p.set_defaults(func=cmd_noise)

    p = sub.add_parser("bound", help="smallest AMSE `a` for a noise, and which losses are asymmetric for it")
    p.add_argument("--noise", required=True, help="SPEC, e.g. symmetric:0.8 or pairflip:0.4")
    p.add_argument("--classes", type=int, required=True)
    p.add_argument("--q", type=float, default=2.0, help="AMSE exponent (default 2)")
    p.add_argument("--losses", nargs="+", help="losses to check (default: all registered)")
    p.set_defaults(func=cmd_bound)

    from jal_plugins.bench import add_command
    from jal_plugins.runner import add_commands

    add_commands(sub)
    add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (KeyError, ValueError, TypeError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"jal-plugins {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
