"""Evaluate a trained agent on whole games with the raw score (the number papers quote).

    python scripts/evaluate.py runs/Pong-rim-s0 --episodes 10
    python scripts/evaluate.py runs/Pong-rim-s0/final_weights.pt --deterministic --video pong.mp4
    python scripts/evaluate.py results/minatar_sound/weights/MinAtar-Breakout-rim-s0.pt --video b.mp4 --still b.png
    python scripts/evaluate.py runs/MiniGrid-MultiRoom-N2-S4-v0-rim-s0 --env MiniGrid-MultiRoom-N4-S5-v1  # zero-shot

RUN_DIR_OR_MODEL: a run directory (its weights-only final_weights.pt, else its final_model.zip, else
its newest checkpoint), an SB3 .zip inside a run directory, or a weights-only export (.pt: no code is
unpickled). An SB3 .zip is unpickled, which can run code from the file: evaluate only zips you trust.
Prints the score mean/std/min/max and lengths, and writes them as JSON (default: evaluation.json
beside the model; evaluation-<env>.json with --env). The output files are checked for writing before any game is played.
The video shows the game beside a strip of which mechanisms are active at each step (the last 100 steps);
--still writes the first game's last frame of it as a PNG.
--env plays another env zero-shot (same observation and action spaces as the agent's, else a one-line error);
on MiniGrid the success rate (episodes with a positive return) is printed beside the mean return.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="RUN_DIR_OR_MODEL")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--deterministic", action="store_true", help="greedy actions")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--video", default=None, metavar="OUT.mp4", help="video of the first game")
    parser.add_argument("--still", default=None, metavar="OUT.png", help="the last frame of the first game, as PNG")
    parser.add_argument("--output", default=None, help="JSON file (default: evaluation.json beside the model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--env", default=None, help="play this env zero-shot instead of the run's")
    args = parser.parse_args(argv)

    from rims_rl.rl.evaluation import evaluate, load_trained
    from rims_rl.utils.run_dir import atomic_write_text, check_writable

    source = Path(args.model)
    default = "evaluation.json" if args.env is None else f"evaluation-{args.env.replace('/', '-')}.json"
    output = Path(args.output) if args.output else (source if source.is_dir() else source.parent) / default
    try:
        if source.exists():
            check_writable(output)
        model, run = load_trained(args.model, args.device)
        result = evaluate(
            model, run, args.episodes, args.deterministic, args.seed, args.video, still=args.still, env=args.env
        )
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["model"] = str(source)
    atomic_write_text(json.dumps(result, indent=2), output)
    where = result["env"] + (f" (trained on {run['env']})" if result["env"] != run["env"] else "")
    success = f", success rate {result['success_rate']:.2f}" if "success_rate" in result else ""
    print(
        f"{where} {run['agent']}: score {result['mean_score']:.2f} ± {result['std_score']:.2f} "
        f"(min {result['min_score']:.2f}, max {result['max_score']:.2f}) over {result['episodes']} games{success}, "
        f"mean length {result['mean_length']:.0f} steps"
    )
    if "activation_frequency" in result:
        print("mechanism activation frequency: " + " ".join(f"{f:.2f}" for f in result["activation_frequency"]))
    print(f"written: {output}" + "".join(f", {p}" for p in (args.video, args.still) if p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
