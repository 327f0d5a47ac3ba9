#!/usr/bin/env bash
# What ran after the queue was stopped at 17:07 to fit the session: MNIST LSTM to the step the RIM
# had reached (400), then bouncing balls. Re-running resumes; run_queue.sh completes everything.
set -u
cd "$(dirname "$0")/../.."
. .venv/bin/activate
T="python scripts/train_supervised.py --threads 1 --no-progress"
M="--data-dir /work/shared/data/mnist"
run() { name=$1; shift; echo "=== $(date +%T) $name"; $T --run-dir runs/$name "$@" > results/logs/$name.log 2>&1; echo "=== $(date +%T) $name rc=$?"; }
run mnist-lstm-s0   --task mnist   --model lstm --seed 0 $M --steps 400
run balls-rim-s0    --task balls   --model rim  --seed 0
run balls-lstm-s0   --task balls   --model lstm --seed 0
echo "=== $(date +%T) done"
