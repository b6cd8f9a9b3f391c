#!/usr/bin/env bash
# Which INR fit protocol serves weight-space classification best? (issue "Paper scale on this machine")
#
#   WORK=~/ng_runs/study bash benchmarks/fit_protocol_study.sh fit     # the four fits, one after another
#   WORK=~/ng_runs/study bash benchmarks/fit_protocol_study.sh train   # the classifiers, in priority order
#
# The same 5,000 / 1,000 / 2,000 MNIST images (DWSNets split, first items) are fitted four ways:
#   fixed        SIREN init, 200 Adam steps at lr 1e-3 (this library's default)
#   authors      SIREN init, up to 1000 steps at lr 5e-4, per-INR early stopping at 40 dB
#   dwsinit200   the DWSNets datasets' init (fit-inrs --init dwsnets), 200 steps at lr 1e-3
#   dwsinit1000  the DWSNets datasets' init, 1000 steps at lr 1e-3 (reproduces their weight statistics)
# and NG-GNN (no probes, hidden 32 x 4) and DWSNet (hidden 32 x 4, max reduction) are trained on each
# for 10 epochs (batch 32, lr 1e-3, two seeds). Both parts are resumable: run them again after any stop
# (finished fits and runs are skipped, a run continues from its last epoch). One thread each; the two
# parts may run side by side (train waits for each fit). Each fit writes fit_<name>.json (seconds and
# settings) and each run its results.json (test accuracy at the best validation epoch).
set -uo pipefail
WORK=${WORK:-$HOME/ng_runs/study}
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)/shared/datasets/mnist}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$REPO
mkdir -p "$WORK"

fit() {
  for fit in fixed authors dwsinit200 dwsinit1000; do
    [ -f "$WORK/fit_$fit.json" ] && continue
    $PY - "$fit" "$WORK" "$ROOT" <<'PY'
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from neuralgraph.inr import build_inr_splits
fit, work, root = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
kw = {"fixed": dict(steps=200, lr=1e-3), "authors": dict(steps=1000, lr=5e-4, target_psnr=40.0),
      "dwsinit200": dict(steps=200, lr=1e-3, init="dwsnets"), "dwsinit1000": dict(steps=1000, lr=1e-3, init="dwsnets")}[fit]
t = time.monotonic()
build_inr_splits("mnist", work / f"mnist_{fit}", root=root, n_train=5000, n_val=1000, n_test=2000, chunk_size=1000,
                 progress=False, **kw)
(work / f"fit_{fit}.json").write_text(json.dumps({"fit": fit, "seconds": time.monotonic() - t, **kw}))
print(fit, "fitted", flush=True)
PY
  done
}

train() {
  local NG="--model nggnn --model-arg hidden=32 --model-arg num_layers=4 --model-arg use_probes=false"
  local DWS="--model dwsnet --model-arg hidden=32 --model-arg num_layers=4 --model-arg reduce=max"
  for job in "nggnn fixed 0" "nggnn authors 0" "nggnn dwsinit200 0" "dwsnet dwsinit200 0" "dwsnet fixed 0" \
             "nggnn dwsinit1000 0" "dwsnet dwsinit1000 0" "nggnn fixed 1" "nggnn dwsinit200 1" \
             "nggnn dwsinit1000 1" "nggnn authors 1" "dwsnet dwsinit200 1" "dwsnet dwsinit1000 1" "dwsnet fixed 1"; do
    set -- $job
    local model=$1 fit=$2 seed=$3 out="$WORK/run_$1_$2_s$3" args=$NG
    [ -f "$out/results.json" ] && continue
    while [ ! -f "$WORK/fit_$fit.json" ]; do sleep 60; done
    [ "$model" = dwsnet ] && args=$DWS
    $PY -m neuralgraph.cli train --data "$WORK/mnist_$fit" --out "$out" $args --clip-grad-norm 10 \
      --epochs 10 --batch-size 32 --lr 1e-3 --weight-decay 5e-4 --warmup-epochs 1 \
      --seed "$seed" --threads 1 --resume --quiet --n-reconstructions 0
    echo "$(date +%T) $model $fit seed $seed done"
  done
}

case "${1:-}" in
  fit) fit ;;
  train) train ;;
  *) echo "usage: WORK=DIR bash $0 fit|train" >&2; exit 2 ;;
esac
