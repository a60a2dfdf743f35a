"""CIFAR-10N's three human annotations + JALClassifier pred_probs -> cleanlab's CROWDLAB.

Uses the exact CIFAR-10 subset and the CIFAR-10N label file from ../shared/data (neither ships with
the package; CIFAR-N is CC BY-NC 4.0):

    python examples/cifar10n_multiannotator.py [--data ../shared/data] [--epochs 15]
"""

import argparse
from pathlib import Path

import numpy as np
from cleanlab.multiannotator import get_label_quality_multiannotator

from jal_plugins import JALClassifier
from jal_plugins.adapters.cleanlab import cross_val_pred_probs
from jal_plugins.labelfiles import read_label_arrays


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    data = Path(args.data)
    subset = dict(np.load(data / "cifar10-exact-subset.npz"))
    labels = read_label_arrays(data / "CIFAR-10_human.pt")
    index = subset["train_index"]
    images = subset["x_train"].transpose(0, 3, 1, 2).copy()  # NHWC -> NCHW uint8
    annotations = np.stack([labels[f"random_label{i}"][index] for i in (1, 2, 3)], axis=1)
    clean = labels["clean_label"][index]
    consensus_vote = labels["aggre_label"][index]

    clf = JALClassifier(module="cnn8", module_params={"width": 0.25}, epochs=args.epochs, lr=0.01,
                        preset="cifar10", random_state=0)  # fmt: skip
    pred_probs = cross_val_pred_probs(clf, images, consensus_vote, cv=3, seed=0)
    result = get_label_quality_multiannotator(annotations, pred_probs, verbose=False)
    consensus = result["label_quality"]["consensus_label"].to_numpy()
    print(f"{len(index)} images, 3 annotators each")
    print(f"majority vote (CIFAR-10N aggre) accuracy vs clean: {np.mean(consensus_vote == clean):.2%}")
    print(f"CROWDLAB consensus accuracy vs clean:              {np.mean(consensus == clean):.2%}")
    print("annotator quality:")
    print(result["annotator_stats"].to_string())


if __name__ == "__main__":
    main()
