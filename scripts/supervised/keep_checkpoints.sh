#!/usr/bin/env bash
# Commit a copy of the checkpoint of every supervised run that is still training, so that a fresh checkout of the
# repository resumes it instead of starting again: runs/<name>/checkpoint.pt stays ignored by git (and untracked,
# so adding a run's small files never stages it); its copy goes to results/supervised/resume/<name>.pt, which
# run_queue.sh puts back into a run directory that has no checkpoint before it resumes the run.
# A run of sequential MNIST at the paper's size needs ~5 h of one core, longer than one working session here;
# its checkpoint is ~9 MB (RIM 6 x 100) or ~18 MB (LSTM 600) and every call adds that much to the history, so
# call it once or twice per session (the last time shortly before the session ends), not at every evaluation.
# A run that finishes after an earlier call kept a copy gets its final checkpoint (the trained model) at the next
# call, then never changes again. Only these files and the runs' small files are committed, whatever else is staged.
# Usage, from anywhere:  bash scripts/supervised/keep_checkpoints.sh
set -eu
cd "$(dirname "$0")/../.."  # the repository root (this script is in scripts/supervised/)
. .venv/bin/activate
R=results/supervised/runs
K=results/supervised/resume
mkdir -p $K
paths=()
for ckpt in $R/*/checkpoint.pt; do
  [ -e "$ckpt" ] || continue
  name=$(basename "$(dirname "$ckpt")")
  # unfinished (training now or to be resumed, as the trainer itself says), or finished since its copy was kept
  if [ "$(python scripts/train_supervised.py --resume "$R/$name" --status 2>/dev/null)" != finished ] ||
    { [ -e "$K/$name.pt" ] && ! cmp -s "$ckpt" "$K/$name.pt"; }; then
    cp "$ckpt" "$R/$name/.keep.pt" && mv "$R/$name/.keep.pt" "$K/$name.pt"  # atomic, as the trainer writes it
    git add "$K/$name.pt" && git add "$R/$name" && paths+=("$K/$name.pt" "$R/$name")
  fi
done
[ ${#paths[@]} -gt 0 ] || { echo "no checkpoint to keep"; exit 0; }
git commit -q -m "results: checkpoints of the unfinished supervised runs kept in $K" -- "${paths[@]}" &&
  echo "committed: ${paths[*]}"
