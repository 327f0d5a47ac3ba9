"""Collect supervised runs into result tables and plots (RIM vs LSTM, per task, mean over seeds).

    python -m rims_rl.tasks.report --runs results/supervised/runs --out results/supervised

Writes ``summary.csv`` (the last evaluation of every run), ``summary.md`` (mean ± std over seeds
per task, model and metric), ``curves/<run>.csv`` (every evaluation of every run) and one PNG per task.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

from .models import CoreConfig
from .training import SPEED_SETTINGS, upgrade_config

# The headline metrics per task (paper Table 1 / 2 and Section 4.2), in display order.
HEADLINE = {
    "copying": ["test50/ce", "test200/ce", "test200/ce_all", "test200/copy_acc"],
    "mnist": ["test14/acc", "test16/acc", "test19/acc", "test24/acc"],
    "balls": [
        "balls4/rollout_bce",
        "balls6/rollout_bce",
        "balls8/rollout_bce",
        "balls4/one_step_bce",
        "balls3_curtain/rollout_bce",
        # model-free references: the rollout frames predicted as the per-pixel mean of the test frames
        "balls4/mean_frame_bce",
        "balls6/mean_frame_bce",
        "balls8/mean_frame_bce",
        "balls3_curtain/mean_frame_bce",
    ],
}
PAPER = {  # RIM paper (arXiv 1909.10893) Tables 1 and 2, as quoted in the project's issues (Table 2: accuracy at
    # 16 / 19 / 24 after training at 14 x 14); the bouncing-balls figures are plots, not copied here.
    # The paper does not say whether its copying CE is per copied symbol (``ce``) or per position
    # (``ce_all``, what the authors' released train_copying.py computes), so it is shown beside both.
    ("copying", "lstm", "test200/ce"): 3.56,
    ("copying", "rim", "test200/ce"): 0.00,
    ("copying", "lstm", "test200/ce_all"): 3.56,
    ("copying", "rim", "test200/ce_all"): 0.00,
    ("mnist", "rim", "test16/acc"): 0.900,
    ("mnist", "rim", "test19/acc"): 0.734,
    ("mnist", "rim", "test24/acc"): 0.381,
    ("mnist", "lstm", "test16/acc"): 0.845,
    ("mnist", "lstm", "test19/acc"): 0.522,
    ("mnist", "lstm", "test24/acc"): 0.219,
}


def collect(runs_dir: str | Path) -> list[dict]:
    """One dict per run directory with a ``metrics.json``: task, model, seed, steps, its rows.

    :param runs_dir: folder of run directories (``train_supervised.py --run-dir``)
    """
    runs = []
    for metrics in sorted(Path(runs_dir).glob("*/metrics.json")):
        config = upgrade_config(json.loads((metrics.parent / "config.json").read_text()))  # any version
        rows = json.loads(metrics.read_text())
        if rows:
            runs.append(
                {
                    "name": metrics.parent.name,
                    "task": config["task"],
                    "model": config["model"],
                    "seed": config["seed"],
                    "steps": config["steps"],
                    "rows": rows,
                    "dir": metrics.parent,
                    "settings": _settings(config),
                }
            )
    _label_variants(runs)
    return runs


def _settings(config: dict) -> dict:
    """The settings that make runs comparable: the config (today's vocabulary, :func:`upgrade_config`) less
    seed, the speed settings (``SPEED_SETTINGS``), version and the data folder, flattened
    (``core.hidden_size``, ``options.train_gap``; a missing ``lr_schedule`` is the old default, constant).
    Core sizes are the effective ones, defaults filled in: a RIM's mechanism sizes, an LSTM's or GRU's size
    (``num_units * hidden_size`` unless set), so labels read ``core.lstm_hidden_size=192``, not ``default``."""
    out = {"lr_schedule": "constant"}
    for key, value in config.items():
        if key == "options":
            out.update({f"{key}.{k}": v for k, v in value.items() if k != "data_dir"})
        elif key == "core":
            out.update({f"core.{k}": v for k, v in _core_sizes(config["model"], value).items()})
        elif key not in ("seed", "task", "model", "version", *SPEED_SETTINGS):
            out[key] = value
    return out


def _core_sizes(model: str, core: dict) -> dict:
    """The core settings that shape ``model`` (``"rim"``, ``"lstm"``, ``"gru"``), defaults filled in."""
    sizes = dataclasses.asdict(CoreConfig(model=model, **core))
    del sizes["model"]
    if model == "rim":
        del sizes["lstm_hidden_size"]
        return sizes
    return {"lstm_hidden_size": sizes["lstm_hidden_size"] or sizes["num_units"] * sizes["hidden_size"]}


def _label_variants(runs: list[dict]) -> None:
    """Set each run's ``variant``: its model name, plus the settings that differ between the runs of the same
    task and model (e.g. ``rim lr_schedule=cosine``), so that different settings are never averaged together."""
    by_model = defaultdict(list)
    for run in runs:
        by_model[(run["task"], run["model"])].append(run)
    for (_, model), group in by_model.items():
        keys = sorted({k for r in group for k in r["settings"]})
        differ = [k for k in keys if len({json.dumps(r["settings"].get(k), sort_keys=True) for r in group}) > 1]
        for run in group:
            extra = " ".join(f"{k}={run['settings'].get(k, 'default')}" for k in differ)
            run["variant"] = f"{model} {extra}" if extra else model


def summarise(runs: list[dict]) -> list[dict]:
    """Mean, std and count over seeds of each headline metric at each run's last evaluation.

    Only finished runs (last evaluation at ``steps``) count; unfinished ones are reported apart. Runs are
    grouped by task and variant (model plus the settings in which runs of that model differ; see
    :func:`collect`); ``model`` in the result is the variant's label.
    """
    groups = defaultdict(list)
    for run in runs:
        last = run["rows"][-1]
        if last["step"] == run["steps"]:
            groups[(run["task"], run["model"], run["variant"])].append(last)
    out = []
    for (task, model, variant), lasts in sorted(groups.items()):
        for metric in HEADLINE.get(task, []):
            values = [r[metric] for r in lasts if metric in r]
            if values:
                out.append(
                    {
                        "task": task,
                        "model": variant,
                        "metric": metric,
                        "seeds": len(values),
                        "mean": statistics.fmean(values),
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                        "values": values,
                        "paper": PAPER.get((task, model, metric)),
                    }
                )
    return out


def _plot(runs: list[dict], task: str, path: Path) -> None:
    """The curves of ``task``'s headline metrics: one row of plots per training length (``steps``), so that
    short runs are not squeezed beside long ones, each row with its own legend on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = HEADLINE[task]
    runs = [r for r in runs if r["task"] == task]
    variants = sorted({r["variant"] for r in runs})
    lengths = sorted({r["steps"] for r in runs})
    fig, axes = plt.subplots(
        len(lengths), len(metrics), figsize=(4 * len(metrics) + 4, 3.2 * len(lengths)), squeeze=False
    )
    colours = {"rim": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    for row, steps in zip(axes, lengths):
        for ax, metric in zip(row, metrics):
            for run in runs:
                if run["steps"] == steps:
                    ax.plot(
                        [r["step"] for r in run["rows"] if metric in r],
                        [r[metric] for r in run["rows"] if metric in r],
                        color=colours.get(run["model"]),
                        alpha=0.8,
                        linestyle=["-", "--", ":", "-."][variants.index(run["variant"]) % 4],
                        label=f"{run['variant']} s{run['seed']}",
                    )
            ax.set_title(f"{metric} ({steps} steps)")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        row[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the legends stand outside the plots
    plt.close(fig)


def write_report(runs_dir: str | Path, out_dir: str | Path) -> list[dict]:
    """Write summary.csv, summary.md, curves/ and plots for the runs in ``runs_dir`` to ``out_dir``."""
    runs, out_dir = collect(runs_dir), Path(out_dir)
    (out_dir / "curves").mkdir(parents=True, exist_ok=True)
    for run in runs:
        shutil.copyfile(run["dir"] / "metrics.csv", out_dir / "curves" / f"{run['name']}.csv")
        shutil.copyfile(run["dir"] / "config.json", out_dir / "curves" / f"{run['name']}.config.json")
    keys = ["name", "task", "model", "seed", "steps", "step"] + sorted(
        {k for r in runs for k in r["rows"][-1]} - {"step"}
    )
    with open(out_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for run in runs:
            writer.writerow({**{k: run[k] for k in ("name", "task", "model", "seed", "steps")}, **run["rows"][-1]})
    summary = summarise(runs)
    lines = ["| task | model | metric | seeds | mean ± std | per seed | paper |", "|---|---|---|---|---|---|---|"]
    for s in summary:
        per_seed = ", ".join(f"{v:.3f}" for v in s["values"])
        paper = "" if s["paper"] is None else f"{s['paper']:.3g}"
        lines.append(
            f"| {s['task']} | {s['model']} | {s['metric']} | {s['seeds']} | {s['mean']:.3f} ± {s['std']:.3f} "
            f"| {per_seed} | {paper} |"
        )
    unfinished = [
        f"{r['name']} (step {r['rows'][-1]['step']}/{r['steps']})" for r in runs if r["rows"][-1]["step"] != r["steps"]
    ]
    if unfinished:
        lines += ["", "Unfinished (not in the table): " + ", ".join(unfinished)]
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
    for task in sorted({r["task"] for r in runs}):
        _plot(runs, task, out_dir / f"{task}.png")
    return summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Collect supervised runs into tables and plots")
    p.add_argument("--runs", default="results/supervised/runs", help="folder of run directories")
    p.add_argument("--out", default="results/supervised", help="output folder")
    args = p.parse_args(argv)
    write_report(args.runs, args.out)
    print((Path(args.out) / "summary.md").read_text())


if __name__ == "__main__":
    main()
