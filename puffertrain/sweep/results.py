"""A sweep's results: the table of trials, best_config.json and the plots."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from puffertrain.config import TrainConfig, to_dict
from puffertrain.sweep.study import RETRY_OF, SURPLUS

if TYPE_CHECKING:
    import optuna

BEST_CONFIG = "best_config.json"
PLOTS = ("importances", "history", "parallel_coordinates")


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _state(trial: optuna.trial.FrozenTrial, retried: set[int]) -> str:
    state = trial.state.name
    if trial.user_attrs.get(SURPLUS):
        return "SURPLUS"
    if trial.number in retried:
        return f"{state} (retried)"
    if RETRY_OF in trial.user_attrs:
        return f"{state} (retry of {trial.user_attrs[RETRY_OF]})"
    return state


def trial_table(study: optuna.Study) -> str:
    """Every trial: number, state, objective, steps, wall time and params."""
    trials = study.get_trials(deepcopy=False)
    retried = {int(trial.user_attrs[RETRY_OF]) for trial in trials if RETRY_OF in trial.user_attrs}
    names = sorted({name for trial in trials for name in trial.params})
    header = ["trial", "state", "objective", "steps", "wall s", *names]
    rows = [
        [
            str(trial.number),
            _state(trial, retried),
            _cell(trial.value),
            f"{trial.user_attrs['steps']:,}" if "steps" in trial.user_attrs else "—",
            _cell(trial.user_attrs.get("wall_seconds")),
            *(_cell(trial.params.get(name)) for name in names),
        ]
        for trial in trials
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    import optuna

    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return None
    return study.best_trial


def write_best_config(config: TrainConfig, sweep_dir: Path) -> Path:
    """The best trial's resolved config, ready for ``--config`` (no run dir of its own)."""
    path = sweep_dir / BEST_CONFIG
    data = to_dict(config)
    for key in ("run_dir", "resume", "config"):
        data[key] = None
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def write_plots(study: optuna.Study, sweep_dir: Path) -> list[Path]:
    """Parameter importances, optimisation history and parallel coordinates as PNGs (each one
    Optuna can draw for this study); none without matplotlib (the `plot` extra)."""
    try:
        import matplotlib
    except ImportError:
        print("puffertrain: no plots: pip install 'puffertrain[plot]'", file=sys.stderr)
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    drawers: dict[str, Callable] = {
        "importances": plots.plot_param_importances,
        "history": plots.plot_optimization_history,
        "parallel_coordinates": plots.plot_parallel_coordinate,
    }
    written = []
    for name in PLOTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks these experimental
            try:
                axes = drawers[name](study)
            except (ValueError, RuntimeError) as error:  # too few finished trials to draw
                print(f"puffertrain: no {name} plot: {error}", file=sys.stderr)
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(10, 6)
        figure.tight_layout()
        path = sweep_dir / f"{name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written
