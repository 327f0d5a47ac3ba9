"""Which RIM mechanisms are active in each phase of the copying task, for a trained run.

    python scripts/supervised/mechanism_activity.py results/supervised/runs/copying-rim-cosine-u100-s0 [--gap 200]

Loads the run's checkpoint (kept locally, not committed), feeds 128 fresh test sequences (seed 5) and
prints, per mechanism, the fraction of (step, sequence) pairs in which it is among the k active ones while
the symbols are read, during the gap of blanks, and from the delimiter on (when it must write them out).
"""

import argparse
import json
from pathlib import Path

import torch

from rims_rl.tasks import TrainConfig
from rims_rl.tasks.copying import copying_batch

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("run_dir", type=Path)
p.add_argument("--gap", type=int, default=200)
args = p.parse_args()
config = TrainConfig.from_saved(json.loads((args.run_dir / "config.json").read_text()))
task = config.make_task()
model = task.make_model()
model.load_state_dict(torch.load(args.run_dir / "checkpoint.pt", weights_only=False)["model"])
model.eval()
o = task.options
inputs, _, _ = copying_batch(128, o.copy_length, args.gap, o.num_symbols, torch.Generator().manual_seed(5))
with torch.no_grad():
    active = model(inputs)[2].float()  # [T, B, U]
end = o.copy_length + args.gap
for phase, steps in (
    ("reading the symbols", slice(0, o.copy_length)),
    (f"gap of {args.gap} blanks", slice(o.copy_length, end)),
    ("delimiter and output", slice(end, None)),
):
    print(f"{phase:22s}", " ".join(f"{v:.2f}" for v in active[steps].mean((0, 1)).tolist()))
