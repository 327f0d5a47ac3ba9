#!/usr/bin/env bash
# Commit the checkpoints of the supervised runs that are still training, so that a fresh checkout of the
# repository resumes them instead of starting again (checkpoint.pt is ignored by git: this adds it by force).
# A run of sequential MNIST at the paper's size needs ~5 h of one core, longer than one working session here;
# its checkpoint is ~9 MB (RIM 6 x 100) or ~18 MB (LSTM 600) and every call adds that much to the history, so
# call it once or twice per session (the last time shortly before the session ends), not at every evaluation.
# A run that finishes after an earlier call committed its checkpoint gets its final one (the trained model) at
# the next call, then never changes again. Only these files are committed, whatever else is staged.
# Usage, from anywhere:  bash scripts/supervised/keep_checkpoints.sh
set -eu
cd "$(dirname "$0")/../.."  # the repository root (this script is in scripts/supervised/)
. .venv/bin/activate
R=results/supervised/runs
added=()
for ckpt in $R/*/checkpoint.pt; do
  [ -e "$ckpt" ] || continue
  run=$(dirname "$ckpt")
  # unfinished (training now or to be resumed, as the trainer itself says) or committed before and changed since
  if [ "$(python scripts/train_supervised.py --resume "$run" --status 2>/dev/null)" != finished ] ||
    { git ls-files --error-unmatch "$ckpt" >/dev/null 2>&1 && ! git diff --quiet -- "$ckpt"; }; then
    added+=("$(basename "$run")")
  fi
done
[ ${#added[@]} -gt 0 ] || { echo "no checkpoint to commit"; exit 0; }
paths=()
for name in "${added[@]}"; do  # each run's small files go in with its checkpoint
  git add -f "$R/$name/checkpoint.pt" && git add "$R/$name" && paths+=("$R/$name")
done
git commit -q -m "results: checkpoints of the supervised runs ${added[*]}" -- "${paths[@]}" && echo "committed: ${added[*]}"
