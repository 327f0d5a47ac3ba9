"""Comparison experiments: grids of training runs (agents × games × seeds), their aggregation and the report."""

from .aggregate import Run, aggregate, collect_runs, normalisers, read_run
from .config import Cell, GridConfig, load_grid
from .grid import GridResult, cell_status, run_cell, run_grid
from .references import load_references, measure_random_scores, random_policy_score
from .report import write_report

__all__ = [
    "Cell",
    "GridConfig",
    "GridResult",
    "Run",
    "aggregate",
    "cell_status",
    "collect_runs",
    "load_grid",
    "load_references",
    "measure_random_scores",
    "normalisers",
    "random_policy_score",
    "read_run",
    "run_cell",
    "run_grid",
    "write_report",
]
