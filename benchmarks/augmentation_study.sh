#!/usr/bin/env bash
# Does the papers' INR augmentation help NG-GNN at a short budget? (issue "Paper scale on this machine")
#
#   WORK=~/ng_runs/study bash benchmarks/augmentation_study.sh train   # needs the fit of fit_protocol_study.sh
#   WORK=~/ng_runs/study bash benchmarks/augmentation_study.sh rows    # one JSON row per finished run
#
# NG-GNN (no probes, hidden 32 x 4) on the 5,000 / 1,000 / 2,000 MNIST INRs of the `dwsinit1000` fit of
# benchmarks/fit_protocol_study.sh, with that study's training settings (10 epochs, batch 32, lr 1e-3, one warm-up
# epoch, clipping at 10), with and without the augmentation both papers train with (the paper-scale reproduction's
# PAPER_AUGMENT: translate 0.25, rotate 45 degrees, scale 0.2, 1 % weight dropout). Resumable: run it again after
# any stop. One thread.
set -uo pipefail
WORK=${WORK:-$HOME/ng_runs/study}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$REPO
COMMIT=$(git -C "$REPO" rev-parse --short HEAD)
AUG="--augment translate=0.25 --augment rotate=45 --augment scale=0.2 --augment dropout=0.01"

train() {
  for job in "aug 0" "noaug 0" "aug 1"; do
    set -- $job
    local out="$WORK/run_nggnn_dwsinit1000_$1_${COMMIT}_s$2" extra=""
    [ -f "$out/results.json" ] && continue
    [ "$1" = aug ] && extra=$AUG
    $PY -m neuralgraph.cli train --data "$WORK/mnist_dwsinit1000" --out "$out" --model nggnn \
      --model-arg hidden=32 --model-arg num_layers=4 --model-arg use_probes=false --clip-grad-norm 10 \
      --epochs 10 --batch-size 32 --lr 1e-3 --weight-decay 5e-4 --warmup-epochs 1 --seed "$2" --threads 1 \
      --resume --quiet --n-reconstructions 0 $extra
    echo "$(date +%T) $1 seed $2 done"
  done
}

rows() {
  $PY - "$WORK" <<'PY'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("run_nggnn_dwsinit1000_*aug_*_s*/results.json")):
    r = json.loads(path.read_text())
    hist = [line.split(",") for line in (path.parent / "metrics.csv").read_text().splitlines()[1:]]
    _, augment, commit, seed = path.parent.name.rsplit("_", 3)
    print(json.dumps({"row": augment, "seed": int(seed[1:]), "commit": commit, "test_acc": r["test_acc"],
                      "best_val_acc": r["best_val_acc"], "best_epoch": r["best_epoch"], "epochs": r["epochs"],
                      "train_acc_last": float(hist[-1][2]), "train_s": round(r["train_time_s"], 1),
                      "augment": r["config"]["augment"], "n": r["n"]}))
PY
}

"${1:-train}"
