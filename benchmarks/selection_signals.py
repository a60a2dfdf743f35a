"""What the held-out halves of a tuned fit see: each candidate's agreement with the noisy labels,
with the clean ones, and with the other candidates' averaged predictions, beside its refit.

The split and noise of ``choose_params.py``; the refit accuracies are read from its JSON (the
same seeds train the same networks).

    python benchmarks/selection_signals.py ce asymmetric:0.4 --seeds 0 1 2

For each seed and candidate: ``noisy`` (the default criterion), ``clean`` (the held-out rows'
true labels, which a user does not have), ``consensus`` (agreement with the argmax of the other
candidates' mean probabilities) and ``refit`` (the candidate trained on all the labels, scored on
the clean test rows). Then the mean refit accuracy of the candidate each signal ranks first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from choose_params import noisy_labels
    from digits_split import digits_split

    from jal_plugins import JALClassifier, selection

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loss")
    parser.add_argument("noise")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", default="benchmarks/results/choose_params.json", help="choose_params.py's rows")
    args = parser.parse_args()

    held = {}
    score = selection.score

    def recording(predicted, labels, criteria):  # keep the held-out rows and logits the selection scores
        held["rows"] = next(np.concatenate([r for r, _ in f]) for f in predicted if f is not None)
        out = score(predicted, labels, criteria)
        held["logits"] = out[1]
        return out

    selection.score = recording
    refits = {(r["noise"], r["seed"], r["loss"]): r["fixed"] for r in json.loads(Path(args.json).read_text())}
    x, y, train, _ = digits_split()
    picked = {"noisy": [], "clean": [], "consensus": [], "best": []}
    for seed in args.seeds:
        noisy = noisy_labels(args.noise, y[train], seed)
        fitted = JALClassifier(loss=args.loss, random_state=seed).fit(x[train], noisy)
        rows, refit = held["rows"], refits[(args.noise, seed, args.loss)]
        probs = torch.stack([torch.softmax(z.double(), 1) for z in held["logits"]]).cpu().numpy()
        predicted, total = probs.argmax(2), probs.sum(0)
        signals = {
            "noisy": [float(np.mean(p == noisy[rows])) for p in predicted],
            "clean": [float(np.mean(p == y[train][rows])) for p in predicted],
            "consensus": [float(np.mean(p == (total - own).argmax(1))) for p, own in zip(predicted, probs)],
        }
        print(f"{args.loss} {args.noise} seed {seed}")
        for c, candidate in enumerate(fitted.candidates_):
            cells = " ".join(f"{name} {values[c]:.3f}" for name, values in signals.items())
            print(f"  {json.dumps({**candidate['loss_params'], **candidate['config']}):42s} {cells} refit {refit[c]:.3f}")
        for name, values in signals.items():
            picked[name].append(refit[int(np.argmax(values))])
        picked["best"].append(max(refit))
    print("mean refit accuracy of the candidate each ranks first:",
          ", ".join(f"{name} {100 * np.mean(v):.1f}" for name, v in picked.items()))  # fmt: skip


if __name__ == "__main__":
    main()
