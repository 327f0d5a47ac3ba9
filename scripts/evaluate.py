"""Evaluate a trained agent on whole games with the raw score (the number papers quote).

    python scripts/evaluate.py runs/Pong-rim-s0 --episodes 10
    python scripts/evaluate.py runs/Pong-rim-s0/final_weights.pt --deterministic --video pong.mp4
    python scripts/evaluate.py results/minatar_sound/weights/MinAtar-Breakout-rim-s0.pt --video b.mp4 --still b.png

RUN_DIR_OR_MODEL: a run directory (its weights-only final_weights.pt, else its final_model.zip, else
its newest checkpoint), an SB3 .zip inside a run directory, or a weights-only export (.pt: no code is
unpickled). An SB3 .zip is unpickled, which can run code from the file: evaluate only zips you trust.
Prints the score mean/std/min/max and lengths, and writes them as JSON (default: evaluation.json
beside the model). The output files are checked for writing before any game is played.
The video shows the game beside a strip of which mechanisms are active at each step (the last 100 steps);
--still writes the first game's last frame of it as a PNG.
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
    args = parser.parse_args(argv)

    from rims_rl.rl.evaluation import evaluate, load_trained
    from rims_rl.utils.run_dir import atomic_write_text, check_writable

    source = Path(args.model)
    output = Path(args.output) if args.output else (source if source.is_dir() else source.parent) / "evaluation.json"
    try:
        if source.exists():
            check_writable(output)
        model, run = load_trained(args.model, args.device)
        result = evaluate(model, run, args.episodes, args.deterministic, args.seed, args.video, still=args.still)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["model"] = str(source)
    atomic_write_text(json.dumps(result, indent=2), output)
    print(
        f"{run['env']} {run['agent']}: score {result['mean_score']:.1f} ± {result['std_score']:.1f} "
        f"(min {result['min_score']:.0f}, max {result['max_score']:.0f}) over {result['episodes']} games, "
        f"mean length {result['mean_length']:.0f} steps"
    )
    if "activation_frequency" in result:
        print("mechanism activation frequency: " + " ".join(f"{f:.2f}" for f in result["activation_frequency"]))
    print(f"written: {output}" + "".join(f", {p}" for p in (args.video, args.still) if p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
