#!/usr/bin/env bash
# The GPU issue in one device call: speed, then the paper's two hardest CIFAR-10 columns.
#
# On the device machine (torch, torchvision, numpy, scikit-learn, pluggy; no cleanlab or datasets,
# which the package imports lazily), from the repository root, with ../shared/data/cifar10-jpeg.npz
# carried as .carry/cifar10-jpeg.npz:
#
#   bash benchmarks/gpu_session.sh            # SEEDS=1 for one seed; rerun on a warm machine to resume
#
# Runs train under runs/gpu (ignored by git, kept on a warm machine, so a rerun resumes); what is
# worth keeping is copied to $OUT (the device tool brings it back) as it is written.
set -uo pipefail
export PYTHONPATH=.
DATA=${DATA:-.carry}
RUNS=${RUNS:-runs/gpu}
OUT=${OUT:-$RUNS/out}
SEEDS=${SEEDS:-3}
SPEED_EPOCHS=${SPEED_EPOCHS:-10}
mkdir -p "$RUNS" "$OUT"
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python -c "import torch; print('torch', torch.__version__)"; } | tee "$OUT/device.txt"

# 1. Speed: the reference-style loop (2 epochs, extrapolated), the engine alone and a stack at its
#    auto size, each over SPEED_EPOCHS epochs of the 120-epoch recipe (seconds scale with epochs).
[ -f "$OUT/speed.json" ] || python benchmarks/cifar10_speed.py --data "$DATA/cifar10-jpeg.npz" --epochs "$SPEED_EPOCHS" \
    --reference-epochs 2 --json "$OUT/speed.json" 2>&1 | tee "$OUT/speed.log"

# 2. Accuracy: symmetric 0.8 and asymmetric 0.4 x ce, nce+rce, anl-ce, jal-ce x SEEDS, 120 epochs,
#    stacked; the table beside the paper's figures, the records with their seconds and stack sizes.
python -m jal_plugins bench paper-cifar10-hardest --seeds "$SEEDS" --dataset-param "source=$DATA/cifar10-jpeg.npz" \
    --out "$RUNS/hardest" 2>&1 | tee "$OUT/hardest.log"
cp "$RUNS/hardest/results.jsonl" "$OUT/hardest-results.jsonl" 2>/dev/null
cp "$RUNS"/hardest/bench.* "$OUT/" 2>/dev/null
true
