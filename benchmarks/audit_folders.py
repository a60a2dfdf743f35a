"""`jal-plugins audit` on image folders with known wrong labels: how many it finds, how fast, end to end.

Each source is written as an image folder (class sub-folders named after the GIVEN labels) under a
temporary folder outside the repository, audited through the real command line, and
``label_issues.csv`` is scored against the clean labels:

    python benchmarks/audit_folders.py digits           # scikit-learn digits, 20 % symmetric noise
    python benchmarks/audit_folders.py fashion-mnist    # 5,000 28x28 images, 20 % symmetric noise
    python benchmarks/audit_folders.py cifar10n --data ../shared/data -- --model-param width=0.25
                                                        # 5,000 CIFAR-10 images, CIFAR-10N worst labels

Arguments after ``--`` go to ``jal-plugins audit``. Printed: the audit's wall time (the command, from
start to exit, with a cold image cache), the realised noise rate, the flagged count, precision and
recall of the flagged set, and precision at 100 (of the 100 worst-ranked labels, how many are wrong).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = 5000  # images of the fashion-mnist and cifar10n folders


def digits(args):
    """(encoded-or-array images, clean labels, given labels, class names) of scikit-learn's digits."""
    from sklearn.datasets import load_digits

    from jal_plugins import create_noise_model

    raw = load_digits()
    images = np.round(raw.images * (255 / 16)).astype(np.uint8)
    noisy = create_noise_model("symmetric", rate=args.rate, exact=False).apply(raw.target, 10, seed=args.seed)
    return list(images), raw.target, noisy, [str(d) for d in range(10)]


def fashion_mnist(args):
    from jal_plugins import create_noise_model
    from jal_plugins.datasets.idx import fashion_mnist as load

    data = load(train_size=SIZE, subset_seed=args.seed)
    noisy = create_noise_model("symmetric", rate=args.rate, exact=False).apply(data.y_train, 10, seed=args.seed)
    return list(data.x_train[:, 0]), data.y_train, noisy, data.names


def cifar10n(args):
    """JPEG files of a class-balanced 5,000-image subset of CIFAR-10's train split (written as they are)."""
    from jal_plugins.datasets import balanced_subset
    from jal_plugins.datasets.cifar import CIFAR10_CLASSES
    from jal_plugins.labelfiles import read_label_arrays

    data = Path(args.data)
    with np.load(data / "cifar10-jpeg.npz") as f:
        blob, offsets, y = f["train_jpeg"], f["train_offsets"], f["y_train"]
    labels = read_label_arrays(data / "CIFAR-10_human.pt")
    assert np.array_equal(labels["clean_label"], y), "the label file is not in the npz's order"
    rows = balanced_subset(y, SIZE, args.seed)
    jpegs = [blob[offsets[i] : offsets[i + 1]].tobytes() for i in rows]
    return jpegs, y[rows], labels["worse_label"][rows], CIFAR10_CLASSES


SOURCES = {"digits": digits, "fashion-mnist": fashion_mnist, "cifar10n": cifar10n}


def write_folder(root: Path, images, given, names) -> None:
    """Image ``i`` as ``root/<given class>/<i>.png`` (``.jpg`` for JPEG bytes, copied unchanged)."""
    from PIL import Image

    folders = [re.sub(r"[^A-Za-z0-9_.-]+", "_", n) for n in names]
    for i, (image, label) in enumerate(zip(images, given)):
        folder = root / folders[label]
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(image, bytes):
            (folder / f"{i:05d}.jpg").write_bytes(image)
        else:
            Image.fromarray(image).save(folder / f"{i:05d}.png")


def score(csv_path: Path, clean, given) -> dict:
    with open(csv_path, newline="") as fh:
        flagged = [int(Path(row["id"]).stem) for row in csv.DictReader(fh)]
    wrong = clean != given
    hits = wrong[flagged]
    return {
        "examples": int(len(given)), "wrong labels": int(wrong.sum()), "noise rate": round(float(wrong.mean()), 4),
        "flagged": len(flagged), "precision": round(float(hits.mean()), 4) if flagged else None,
        "recall": round(float(hits.sum() / wrong.sum()), 4), "precision@100": round(float(hits[:100].mean()), 4),
    }  # fmt: skip


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=sorted(SOURCES))
    parser.add_argument("--data", default="../shared/data", help="folder with cifar10-jpeg.npz and CIFAR-10_human.pt")
    parser.add_argument("--rate", type=float, default=0.2, help="symmetric noise rate (digits, fashion-mnist)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="folder for the image folder and the audit (default: a new temporary folder)")
    args = parser.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix=f"audit-{args.source}-"))
    images, clean, given, names = SOURCES[args.source](args)
    root = work / "images"
    write_folder(root, images, given, names)
    out = work / "audit"
    command = [sys.executable, "-m", "jal_plugins", "audit", "--dataset", "imagefolder", "--dataset-param",
               f"path={root}", "--out", str(out), "--json", *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(done.stderr)
    summary = json.loads(done.stdout)
    result = {"source": args.source, "audit seconds": round(seconds, 1), "model": summary["model"],
              "epochs": summary["epochs"], "loss": summary["loss"], "folds": summary["folds"],
              "estimated noise rate": round(summary["estimated_noise_rate"], 4),
              **score(out / "label_issues.csv", clean, given), "command": " ".join(command[1:])}  # fmt: skip
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
