#!/usr/bin/env bash
# One GPU session for the model-zoo issue (first run on an H100, 2026-11-26: see the README's GPU section;
# a 10,000-network zoo did not finish its first 5000-network chunk in 300 s with grouped convolutions) (run by hand on a CUDA machine; MNIST IDX files in $MNIST):
# the CUDA tests, zoo-training throughput (vectorised vs plain loop), a 10,000-network MNIST Small CNN
# zoo, StatNN and NG-GNN / NG-T accuracy prediction on it. Results go to $OUT (default runs/gpu_zoo).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:-.}
OUT=${OUT:-runs/gpu_zoo}; MNIST=${MNIST:-.gpu_data/mnist}; WORK=${WORK:-/tmp/gpu_zoo}
NETS=${NETS:-10000}; EPOCHS=${EPOCHS:-20}; SMALL=${SMALL:-0}
mkdir -p "$OUT" "$WORK"
nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee "$OUT/log.txt"
if [ "$SMALL" = 0 ]; then
  timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -5 | tee -a "$OUT/log.txt"
  timeout 70 python3 benchmarks/bench_zoo.py --device cuda --networks 2048 --plain 4 --n-train 4096 \
    --root "$MNIST" --threads 16 2>&1 | tee -a "$OUT/log.txt"
fi
common=(--out "$WORK" --root-mnist "$MNIST" --zoo mnist_small_cnn --num-networks "$NETS" --zoo-epochs 3
        --n-train 10000 --n-test 10000 --chunk-size 5000 --epochs "$EPOCHS" --batch-size 64 --device "${DEVICE:-cuda}"
        --threads 16)
timeout "${T1:-260}" python3 benchmarks/results_zoo_regression.py "${common[@]}" --models nggnn 2>&1 | tee "$OUT/nggnn.log"
cp "$WORK/results_mnist_small_cnn.json" "$OUT/results_nggnn.json" 2>/dev/null
timeout "${T2:-150}" python3 benchmarks/results_zoo_regression.py "${common[@]}" --models ngt 2>&1 | tee "$OUT/ngt.log"
cp "$WORK/results_mnist_small_cnn.json" "$OUT/results_ngt.json" 2>/dev/null
for m in nggnn ngt; do
  cp "$WORK/mnist_small_cnn_$m/predictions.png" "$OUT/predictions_$m.png" 2>/dev/null
done
[ "$SMALL" = 0 ] && timeout "${T3:-120}" python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  -k compile_gives >> "$OUT/log.txt" 2>&1
exit 0
