#!/usr/bin/env bash
# The supervised experiments, one process at a time (2 shared CPU cores), in priority order.
# Each run checkpoints every 250 steps; re-running this script resumes every unfinished run and
# skips finished ones. Launch from the repository root:
#   setsid nohup nice -n 15 bash results/supervised/run_queue.sh > results/logs/queue.log 2>&1 &
set -u
cd "$(dirname "$0")/../.."
. .venv/bin/activate
T="python scripts/train_supervised.py --threads 1 --no-progress"
M="--data-dir /work/shared/data/mnist"
run() { name=$1; shift; echo "=== $(date +%T) $name"; $T --run-dir runs/$name "$@" > results/logs/$name.log 2>&1; echo "=== $(date +%T) $name rc=$?"; }
run copying-rim-s0  --task copying --model rim  --seed 0
run copying-lstm-s0 --task copying --model lstm --seed 0
run mnist-rim-s0    --task mnist   --model rim  --seed 0 $M
run mnist-lstm-s0   --task mnist   --model lstm --seed 0 $M
run balls-rim-s0    --task balls   --model rim  --seed 0
run balls-lstm-s0   --task balls   --model lstm --seed 0
run copying-lstm-s1 --task copying --model lstm --seed 1
run mnist-lstm-s1   --task mnist   --model lstm --seed 1 $M
run copying-rim-s1  --task copying --model rim  --seed 1
run mnist-rim-s1    --task mnist   --model rim  --seed 1 $M
echo "=== $(date +%T) queue done"
