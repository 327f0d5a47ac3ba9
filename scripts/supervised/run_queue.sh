#!/usr/bin/env bash
# The supervised experiments, one process at a time (2 shared CPU cores), in priority order.
# Each run checkpoints at every evaluation and every 10 minutes of training into
# results/supervised/runs/<name>/checkpoint.pt (ignored by git) and appends its output to runs/<name>/train.log;
# re-running this script resumes every unfinished run and skips finished ones. scripts/supervised/keep_checkpoints.sh
# commits copies of the unfinished runs' checkpoints (results/supervised/resume/<name>.pt); in a fresh checkout this
# script puts such a copy back into its run directory before it resumes the run. A run
# locks its directory while it trains, so a second copy of this script (a second worker) skips the run the
# first is training and takes the next one.
# Launch from the repository root (once per worker):
#   setsid nohup nice -n 15 bash scripts/supervised/run_queue.sh >> results/logs/queue.log 2>&1 &
# then: python -m rims_rl.tasks.report --runs results/supervised/runs --out results/supervised
# MNIST runs need the MNIST IDX files: set MNIST_DIR to their folder and pass $M (see README.md, "Supervised tasks").
set -u
cd "$(dirname "$0")/../.."  # the repository root (this script is in scripts/supervised/)
. .venv/bin/activate
T="python scripts/train_supervised.py --threads 1 --no-progress"
M=${MNIST_DIR:+--data-dir $MNIST_DIR}
R=results/supervised/runs
K=results/supervised/resume  # checkpoints kept by keep_checkpoints.sh
run() {
  name=$1; shift
  if [ ! -e $R/$name/checkpoint.pt ] && [ -e $K/$name.pt ]; then  # a fresh checkout: resume from the kept copy
    mkdir -p $R/$name && cp $K/$name.pt $R/$name/.restore.pt && mv $R/$name/.restore.pt $R/$name/checkpoint.pt
  fi
  # what train_supervised.py would do with these arguments: finished (nothing), busy (another worker trains it) or todo
  status=$($T --run-dir $R/$name "$@" --status 2>/dev/null)
  case $status in
    finished) echo "=== $(date +%T) $name finished"; return;;  # its committed train.log stays as it is
    busy) echo "=== $(date +%T) $name in use by another worker"; return;;
  esac
  mkdir -p $R/$name; echo "=== $(date +%T) $name"
  $T --run-dir $R/$name "$@" >> $R/$name/train.log 2>&1; rc=$?; echo "=== $(date +%T) $name rc=$rc"
}
# Session 2 ran copying-{rim,lstm}-s0, balls-{rim,lstm}-s0 (finished) and mnist-{rim,lstm}-s0 (stopped at step
# 400); their checkpoints were not kept, so they stand as they are (see results/supervised/README.md).
# Session 5: cosine learning-rate decay (the constant-rate RIM plateaued at gap-50 CE ~0.45 from step ~4750)
run copying-rim-cosine-s0  --task copying --model rim  --seed 0 --lr-schedule cosine
run copying-lstm-cosine-s0 --task copying --model lstm --seed 0 --lr-schedule cosine
# Session 6: mechanisms of the paper's size (6 x 100 = the authors' --nhid 600; its first 3,500 steps ran on a
# lent GPU, see scripts/supervised/gpu_runs.sh) and the LSTM of the same size, then the rest
run copying-rim-cosine-u100-s0 --task copying --model rim --seed 0 --lr-schedule cosine --hp core.hidden_size=100
run copying-lstm-cosine-h600-s0 --task copying --model lstm --seed 0 --lr-schedule cosine --hp core.lstm_hidden_size=600
for s in 1 2; do  # ~3 h (RIM) and ~2 h (LSTM) each on one core here; ~20 min of a GPU for the RIM
  run copying-rim-cosine-u100-s$s --task copying --model rim --seed $s --lr-schedule cosine --hp core.hidden_size=100
  run copying-lstm-cosine-h600-s$s --task copying --model lstm --seed $s --lr-schedule cosine --hp core.lstm_hidden_size=600
done
# Session 14: bouncing balls trained closed-loop (the preset: 10,000 steps), 3 seeds, and teacher forcing on seed 0
# (the training of session 2's balls-*-s0) as a labelled comparison; ~25 min per run on one core here
for s in 0 1 2; do
  run balls-rim-cl-s$s --task balls --model rim --seed $s
  run balls-lstm-cl-s$s --task balls --model lstm --seed $s
done
run balls-rim-tf-s0 --task balls --model rim --seed 0 --hp options.closed_loop=false
run balls-lstm-tf-s0 --task balls --model lstm --seed 0 --hp options.closed_loop=false
# Sequential MNIST at the paper's sizes (RIM 6 x 100, k = 4, input values 64 (paper: 400); LSTM 600), batch 128, cosine decay
# over 5,000 steps (80 epochs of the 8k training images); ~4 s per step on one core here, ~6 h per run
for s in 0 1 2; do
  run mnist-rim-u100-s$s $M --task mnist --model rim --seed $s --lr-schedule cosine \
    --hp batch_size=128 steps=5000 eval_every=500 core.hidden_size=100
  run mnist-lstm-h600-s$s $M --task mnist --model lstm --seed $s --lr-schedule cosine \
    --hp batch_size=128 steps=5000 eval_every=500 core.lstm_hidden_size=600
done
# cosine alone did not help (gap-50 CE still ~0.48 at the end): larger mechanisms (the paper's are 100 units)
run copying-rim-cosine-u64-s0 --task copying --model rim --seed 0 --lr-schedule cosine --hp core.hidden_size=64
run copying-rim-cosine-s1  --task copying --model rim  --seed 1 --lr-schedule cosine
run copying-lstm-cosine-s1 --task copying --model lstm --seed 1 --lr-schedule cosine
run copying-rim-cosine-s2  --task copying --model rim  --seed 2 --lr-schedule cosine
run copying-lstm-cosine-s2 --task copying --model lstm --seed 2 --lr-schedule cosine
# Session 21: copying at the paper's size trained twice as long (cosine over 16,000 steps). At 8,000 steps the RIM's
# seeds 1 and 2 stalled at the training gap (gap-50 CE ~0.1 per symbol from step ~4,000) while seed 0 went on to 0.013;
# the RIM first (seeds 1, 2, then 0), then the LSTM 600 with the same schedule
for s in 1 2 0; do
  run copying-rim-u100-16k-s$s --task copying --model rim --seed $s --lr-schedule cosine --hp core.hidden_size=100 steps=16000
done
for s in 0 1 2; do
  run copying-lstm-h600-16k-s$s --task copying --model lstm --seed $s --lr-schedule cosine --hp core.lstm_hidden_size=600 steps=16000
done
echo "=== $(date +%T) queue done"
