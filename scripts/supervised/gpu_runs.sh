#!/usr/bin/env bash
# The supervised runs made on a lent GPU machine (session 6: one NVIDIA GPU, 16 CPU cores, ~9 minutes).
# Sequential MNIST, 3 seeds x {RIM 6x32 k=4, LSTM 192}, batch 128, cosine decay, as many steps as fit:
# first the RIM's step time is measured with the runs' concurrency (4 RIM processes on one GPU), then
# every MNIST run gets the same number of steps. Beside them, copying with the paper's mechanism size
# (6 x 100, k=4; 8,000 steps, resumable anywhere: `train_supervised.py --resume DIR [--device cpu]`).
# Every run stops at the deadline at the latest (its last checkpoint kept) and is packed into
# $OUT/<run>.tgz; unpack into results/supervised/runs/.
# Usage (MNIST IDX files in $MNIST_DIR): bash scripts/supervised/gpu_runs.sh SECONDS
# Session 6 ran it (then in results/supervised/) with 480 s and MNIST_DIR set to the same absolute folder as
# on the CPU machine (the data copied there, so that every run's config.json names one folder); it set 1,000
# steps, and the deadline cut the RIM MNIST runs at step 800 and copying at 2,250. A second call on the same
# machine resumed them for 230 s (`timeout -s INT 230 python3 scripts/train_supervised.py --resume DIR
# --device cuda --threads 2`): MNIST to 1,000, copying to 3,500; copying went on on the CPU
# (scripts/supervised/run_queue.sh).
set -u
cd "$(dirname "$0")/../.."  # the repository root (this script is in scripts/supervised/)
BUDGET=${1:?usage: gpu_runs.sh SECONDS}
START=$(date +%s)
OUT=${OUT:-/tmp/gpu_out}
MNIST=${MNIST_DIR:-.gpu/mnist}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
R=results/supervised/runs
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mkdir -p "$OUT" $R
nvidia-smi -L 2>/dev/null
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
B="$PY benchmarks/supervised_step.py --device $DEVICE --repeats ${REPEATS:-10}"
# 1. step times under the runs' concurrency
for i in 1 2 3; do $B --task mnist --data-dir $MNIST --batch-size 128 --models rim > $OUT/t$i.txt 2>&1 & done
$B --task copying --hp core.hidden_size=100 --models rim > $OUT/t4.txt 2>&1 &
wait
$B --task mnist --data-dir $MNIST --batch-size 128 --models lstm > $OUT/t5.txt 2>&1
cat $OUT/t?.txt
S=$(cat $OUT/t1.txt $OUT/t2.txt $OUT/t3.txt | awk '/s\/step/ {if ($5 > m) m = $5} END {print m}')
rm -f $OUT/t?.txt
LEFT=$((BUDGET - ($(date +%s) - START) - 25))  # 25 s to pack the results
STEPS=$($PY -c "print(max(200, min(6000, int(0.8 * $LEFT / $S / 200) * 200)))")
echo "RIM MNIST ${S} s/step with 4 RIM processes on the GPU; $LEFT s left -> $STEPS steps per MNIST run"
T="timeout -s INT $LEFT $PY scripts/train_supervised.py --device $DEVICE --threads 2 --no-progress"
run() { name=$1; shift; mkdir -p $R/$name; $T --run-dir $R/$name "$@" >> $R/$name/train.log 2>&1; echo "$name rc=$?"; }
for s in 0 1 2; do
  run mnist-rim-b128-s$s --task mnist --model rim --seed $s --data-dir $MNIST --batch-size 128 --lr-schedule cosine --steps $STEPS &
  run mnist-lstm-b128-s$s --task mnist --model lstm --seed $s --data-dir $MNIST --batch-size 128 --lr-schedule cosine --steps $STEPS &
done
run copying-rim-cosine-u100-s0 --task copying --model rim --seed 0 --lr-schedule cosine --hp core.hidden_size=100 &
wait
for d in $R/mnist-*-b128-s? $R/copying-rim-cosine-u100-s0; do
  n=$(basename $d); tail -n 2 $d/train.log | cut -c1-400
  tar czf $OUT/$n.tgz --exclude=.lock -C $R $n
done
echo "done in $(( $(date +%s) - START )) s"
