"""Which out-of-fold signal ranks wrong labels best? The audit's folds trained once per setting, read many ways.

    python benchmarks/audit_signals.py digits --epochs 10 --seeds 2 --avg 4   # networks a fold, last epochs
    python benchmarks/audit_signals.py digits --seeds 4 --loss ce --avg 1

Trains ``seeds`` networks a fold (5 folds, one stack) on a source of ``audit_vs_anchors.py`` and
prints AUPRC/AUROC of the self-confidence ranking (and of the normalised margin) for one network a
fold and for all, at the last epoch and averaged over the last ``avg`` epochs (BENCHMARKS.md).
"""
import json, sys, time, tempfile
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
import audit_vs_anchors as B
from jal_plugins.audit import audit_job
from jal_plugins.job import prepare
from jal_plugins.engine import DeviceData
from jal_plugins.folds import fold_networks
from jal_plugins.loop import train
from sklearn.metrics import average_precision_score, roc_auc_score
from cleanlab.rank import get_label_quality_scores

import argparse
p = argparse.ArgumentParser()
p.add_argument("source"); p.add_argument("--epochs", type=int, default=10); p.add_argument("--seeds", type=int, default=2)
p.add_argument("--loss", default="jal-ce"); p.add_argument("--avg", type=int, default=4); p.add_argument("--lp", default="")
p.add_argument("--in-sample", action="store_true", help="also rank by the networks that trained on each row")
a = p.parse_args()

class A: seed = 0; data = str(Path(__file__).resolve().parents[2] / "shared" / "data")
features, images, clean, given, names = B.SOURCES[a.source](A)
tmp = Path(tempfile.mkdtemp())
options, row_of = B.write_source(tmp, features, images, given, names)
dp = {o.split("=")[0]: o.split("=", 1)[1] for o in options[3::2]}
lp = dict(kv.split("=") for kv in a.lp.split(",") if kv)
lp = {k: float(v) for k, v in lp.items()}
job = audit_job(options[1], tmp / "out", loss=a.loss, loss_params=lp, config={"epochs": a.epochs}, dataset_params=dp)
prep = prepare(job)
data, ctx = prep.data, prep.context
x, g, index = data.labelled()
ids = data.example_ids(index)
rows = np.asarray([row_of(i) for i in ids])
wrong = (clean[rows] != given[rows])
ex = DeviceData(x, g, prep.device, data.mean, data.std)
k = 5
oof = fold_networks(ctx, k, ensemble=a.seeds)
K = data.num_classes
snap = {}  # epoch -> (R, N, K) held-out probs
def cb(runs, stats):
    if runs.epoch > runs.epochs - a.avg:
        P = np.zeros((runs.runs, len(g), K))
        for r, (held, z) in enumerate(oof.held_out(ex)):
            P[r, held] = torch.softmax(z.double(), 1).cpu().numpy()
        snap[runs.epoch] = P
t = time.perf_counter()
train(oof, ex, callbacks=(cb,))
print("train s", round(time.perf_counter() - t, 1), "model", prep.model, file=sys.stderr)
E = a.epochs
def score(P, name):
    q = get_label_quality_scores(g, P)
    qm = get_label_quality_scores(g, P, method="normalized_margin")
    n = wrong.sum()
    out = {"v": name, "auprc": round(average_precision_score(wrong, -q), 4), "auprc_margin": round(average_precision_score(wrong, -qm), 4),
           "auroc": round(roc_auc_score(wrong, -q), 4), "top_n": round(wrong[np.argsort(q)[:n]].mean(), 4)}
    print(json.dumps(out))
S = a.seeds
def mean_over(P, seeds, epochs):
    sel = [P[e][s * k:(s + 1) * k].sum(0) for e in epochs for s in range(seeds)]
    return np.mean(sel, 0)
score(mean_over(snap, 1, [E]), "last, 1 seed")
score(mean_over(snap, S, [E]), f"last, {S} seeds")
for m in range(2, a.avg + 1):
    score(mean_over(snap, 1, range(E - m + 1, E + 1)), f"avg last {m}, 1 seed")
    score(mean_over(snap, S, range(E - m + 1, E + 1)), f"avg last {m}, {S} seeds")

if a.in_sample:  # every network predicts every row: the ones that trained on it say whether they fit its label
    every = torch.softmax(oof.logits(ex).double(), 2).cpu().numpy()  # (R, N, K)
    trained = np.zeros((oof.runs, len(g)), bool)
    for r, (rows_r, _) in enumerate(oof.splits(ex.y)):
        trained[r, rows_r] = True
    inside = (every * trained[:, :, None]).sum(0) / np.maximum(trained.sum(0), 1)[:, None]
    held = mean_over(snap, S, [E]) / S
    score(inside, f"in-sample, {S} seeds")
    score(every.mean(0), f"every network, {S} seeds")
    for w in (0.25, 0.5):
        score((1 - w) * held + w * inside, f"out-of-fold + {w} in-sample, {S} seeds")
