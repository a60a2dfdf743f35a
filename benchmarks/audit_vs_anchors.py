"""`jal-plugins audit` against what a user does today: scikit-learn's ``cross_val_predict`` + cleanlab.

For each source, noisy labels with a known truth are written as a user would have them (a CSV table
with class names, or an image folder whose sub-folders are the GIVEN classes), audited through the
real command line, and scored beside three anchors on the same features (the table's columns, the
images' flattened pixels in [0, 1]): ``LogisticRegression``, ``MLPClassifier`` and
``HistGradientBoostingClassifier``, each with 5-fold ``cross_val_predict(method="predict_proba")``,
then cleanlab's ``find_label_issues`` (the count) and ``get_label_quality_scores`` (the ranking).

    python benchmarks/audit_vs_anchors.py digits fashion-sym fashion-asym cifar10n-worst cifar10n-aggre
    python benchmarks/audit_vs_anchors.py digits --anchors -- --epochs 20   # after --: audit options

Printed per source and method: AUROC and AUPRC of the ranking (a wrong label is a positive; the
lowest label quality ranks first), the flagged count against the true number of wrong labels,
precision and recall of the flagged set, precision (= recall = F1) among the worst-ranked as many as
there are wrong labels, and wall seconds (the audit: the whole command, cold cache; an anchor: its
cross-validation and cleanlab). ``--json FILE`` writes every row.

Sources: ``digits`` (scikit-learn's 1,797 as a 64-column CSV, 20 % symmetric noise), ``embeddings``
(the Fashion-MNIST images below as 512-d vectors in a parquet list column), ``fashion-sym``
and ``fashion-asym`` (5,000 Fashion-MNIST training images, 20 % symmetric / asymmetric noise;
``apt-get install dataset-fashion-mnist``), ``cifar10n-worst`` and ``cifar10n-aggre`` (the 5,170
exact CIFAR-10 images of ``cifar10-exact-subset.npz`` with their CIFAR-10N labels).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATE = 0.2
SIZE = 5000
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


# Fashion-MNIST's look-alike classes (T-shirt/shirt, pullover/coat, trouser/dress, sandal/sneaker/boot,
# bag -> shirt): every class flips, so the realised rate is RATE.
FASHION_FLIPS = {0: 6, 6: 0, 2: 4, 4: 2, 1: 3, 3: 1, 5: 7, 7: 9, 9: 5, 8: 6}


def _noise(name: str, clean: np.ndarray, seed: int, **params) -> np.ndarray:
    from jal_plugins import create_noise_model

    return create_noise_model(name, rate=RATE, **params).apply(clean, int(clean.max()) + 1, seed=seed)


def digits(args):
    """``(features (N, D) in [0, 1], images uint8 or None, clean, given, names)``."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    clean = raw.target.astype(np.int64)
    return raw.data / 16.0, None, clean, _noise("symmetric", clean, args.seed, exact=False), DIGIT_NAMES


def _fashion(noise: str, **params):
    def load(args):
        from jal_plugins.datasets.idx import fashion_mnist

        data = fashion_mnist(train_size=SIZE, subset_seed=args.seed)
        images, clean = data.x_train, data.y_train.astype(np.int64)
        return images.reshape(len(images), -1) / 255.0, images, clean, _noise(noise, clean, args.seed, **params), data.names

    return load


def _cifar10n(label: str):
    def load(args):
        from jal_plugins.datasets.cifar import CIFAR10_CLASSES
        from jal_plugins.labelfiles import read_label_arrays

        data = Path(args.data)
        with np.load(data / "cifar10-exact-subset.npz") as f:
            images, rows, clean = f["x_train"], f["train_index"], f["y_train_all"][f["train_index"]]
        given = read_label_arrays(data / "CIFAR-10_human.pt")[label][rows]
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        return images.reshape(len(images), -1) / 255.0, images, clean.astype(np.int64), given, CIFAR10_CLASSES

    return load


def embeddings(args):
    """Fashion-MNIST as 512-d vectors (a fixed random projection of the pixels, standing in for a
    pretrained model's embeddings), 20 % symmetric noise: a parquet file with a list column."""
    features, _, clean, given, names = _fashion("symmetric", exact=False)(args)
    projection = np.random.default_rng(12345).standard_normal((features.shape[1], 512)) / np.sqrt(features.shape[1])
    return (features @ projection).astype(np.float32), None, clean, given, names


SOURCES = {
    "digits": digits,
    "embeddings": embeddings,
    "fashion-sym": _fashion("symmetric", exact=False),
    "fashion-asym": _fashion("asymmetric", mapping=FASHION_FLIPS, exact=False),
    "cifar10n-worst": _cifar10n("worse_label"),
    "cifar10n-aggre": _cifar10n("aggre_label"),
}


def folder_name(name: str) -> str:
    return name.replace("/", "_").replace(" ", "_")


def write_source(work: Path, features, images, given, names) -> tuple[list[str], callable]:
    """The source as a user holds it: the dataset options of ``audit``, and ``id -> row`` of its ids."""
    if images is None and features.shape[1] > 256:  # many columns: one list column of a parquet file, as embeddings come
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = work / "embeddings.parquet"
        pq.write_table(pa.table({"label": [names[g] for g in given], "embedding": list(features)}), path)
        return ["--dataset", "table", "--dataset-param", f"path={path}", "--dataset-param", "label_column=label"], int
    if images is None:
        path = work / "table.csv"
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["label", *[f"x{j}" for j in range(features.shape[1])]])
            writer.writerows([names[g], *np.round(row, 6)] for g, row in zip(given, features))
        return ["--dataset", "table", "--dataset-param", f"path={path}", "--dataset-param", "label_column=label"], int
    from PIL import Image

    root = work / "images"
    for i, (image, label) in enumerate(zip(images, given)):
        folder = root / folder_name(names[label])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(folder / f"{i:05d}.png")
    return ["--dataset", "imagefolder", "--dataset-param", f"path={root}"], lambda i: int(Path(i).stem)


def scores(wrong: np.ndarray, quality: np.ndarray, flagged: np.ndarray, seconds: float) -> dict:
    """The ranking's AUROC/AUPRC, the flagged set's precision/recall, precision at the true count."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    n = int(wrong.sum())
    top = np.argsort(quality, kind="stable")[:n]
    hits = wrong[flagged]
    return {
        "auroc": round(float(roc_auc_score(wrong, -quality)), 4),
        "auprc": round(float(average_precision_score(wrong, -quality)), 4),
        "flagged": int(len(flagged)), "wrong": n,
        "precision": round(float(hits.mean()), 4) if len(flagged) else None,
        "recall": round(float(hits.sum() / n), 4),
        "f1@true count": round(float(wrong[top].mean()), 4),
        "seconds": round(seconds, 1),
    }  # fmt: skip


def run_audit(work: Path, options: list[str], row_of, given_names, wrong, extra: list[str]) -> dict:
    out = work / "audit"
    command = [sys.executable, "-m", "jal_plugins", "audit", *options, "--out", str(out), "--json", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(done.stderr)
    summary = json.loads(done.stdout)
    with np.load(out / "pred_probs.npz") as f:
        rows = np.asarray([row_of(i) for i in f["id"]])
        quality = np.empty(len(wrong))
        quality[rows] = f["label_quality"]
        written = np.asarray(summary["classes"])[f["given"]]
        assert all(folder_name(a) == folder_name(b) for a, b in zip(given_names[rows], written)), "labels differ"
    with open(out / "label_issues.csv", newline="") as fh:
        flagged = np.asarray([row_of(r["id"]) for r in csv.DictReader(fh)], dtype=np.int64)
    estimate = summary.get("estimated_issues")
    return {"method": "audit", **scores(wrong, quality, flagged, seconds),
            "estimated": estimate, "command": " ".join(command[3:])}  # fmt: skip


ANCHORS = {
    "logistic": lambda: __import__("sklearn.linear_model").linear_model.LogisticRegression(max_iter=2000),
    "mlp": lambda: __import__("sklearn.neural_network").neural_network.MLPClassifier(max_iter=300, random_state=0),
    "hist-gb": lambda: __import__("sklearn.ensemble").ensemble.HistGradientBoostingClassifier(random_state=0),
}


def run_anchor(name: str, features, given, wrong) -> dict:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    start = time.perf_counter()
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    probs = cross_val_predict(ANCHORS[name](), features, given, cv=cv, method="predict_proba")
    flagged = np.flatnonzero(find_label_issues(given, probs, n_jobs=1))
    quality = get_label_quality_scores(given, probs)
    return {"method": name, **scores(wrong, quality, flagged, time.perf_counter() - start)}


def audit_source(source: str, args, features, images, clean, given, names, extra) -> dict:
    """Write ``source`` as a user holds it and audit it through the command line; print its row."""
    with tempfile.TemporaryDirectory(prefix=f"audit-{source}-") as tmp:
        work = Path(args.keep) / source if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        options, row_of = write_source(work, features, images, given, names)
        if args.keep:
            np.savez(work / "truth.npz", clean=clean, given=given)
        result = run_audit(work, options, row_of, np.asarray(names)[given], clean != given, extra)
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", choices=sorted(SOURCES))
    parser.add_argument("--data", default="../shared/data", help="folder with cifar10-exact-subset.npz, CIFAR-10_human.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--anchors", default="logistic,mlp,hist-gb", help="comma-separated; '' for the audit only")
    parser.add_argument("--json", help="write every row to this file")
    parser.add_argument("--keep", help="keep each source's files and audit under KEEP/SOURCE (default: deleted)")
    parser.add_argument("--no-audit", action="store_true", help="the anchors only")
    args = parser.parse_args(argv)
    rows = []
    for source in args.sources:
        features, images, clean, given, names = SOURCES[source](args)
        wrong = clean != given
        results = [] if args.no_audit else [audit_source(source, args, features, images, clean, given, names, extra)]
        results += [run_anchor(a, features, given, wrong) for a in filter(None, args.anchors.split(","))]
        for r in results:
            rows.append({"source": source, "examples": len(given), **r})
            if r["method"] != "audit":
                print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    columns = ["source", "method", "auroc", "auprc", "flagged", "wrong", "precision", "recall", "f1@true count", "seconds"]
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r.get(c)) for c in columns) + " |")


if __name__ == "__main__":
    main()
