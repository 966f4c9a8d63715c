"""``--seeds S1 S2 … [--parallel K]``: one config trained with several seeds, K runs at a time.

Each seed is a normal run (its own process and run directory, ``PARENT/seed_<S>``), so
TensorBoard on the parent shows them side by side and each can be resumed alone; launcher.py
runs them, pinned to disjoint CPUs. ``seeds.json`` in the parent keeps the seeds and the flags,
so ``--resume PARENT`` continues every run (and starts any that never began).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from puffertrain.errors import UserError
from puffertrain.launcher import Job, run_jobs
from puffertrain.threads import cpu_budget
from puffertrain.trainer.checkpoint import list_checkpoints, load_checkpoint
from puffertrain.trainer.run_dir import holds_run, reserve_dir

SEEDS_FILE = "seeds.json"
RECENT_EPISODES = 20  # the progress bar's "return": the mean of the last 20 episodes


@dataclass(frozen=True)
class SeedRun(Job):
    seed: int
    run_dir: Path
    flags: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return run_command(self.run_dir, [*self.flags, "--seed", str(self.seed)])


def run_command(run_dir: Path, flags: list[str]) -> list[str]:
    """The trainer command for a run in ``run_dir``: resume it if it has a checkpoint (the
    flags a resume refuses left out), else start it with ``flags``."""
    trainer = [sys.executable, "-m", "puffertrain", "train"]
    if list_checkpoints(run_dir):
        resume_flags = without_flags(flags, {"--seed", "--run-dir", "--env", "--overwrite"})
        return [*trainer, "--resume", str(run_dir), *resume_flags]
    return [*trainer, *flags, "--run-dir", str(run_dir)]


def without_flags(flags: list[str], names: set[str]) -> list[str]:
    """``flags`` less the options ``names`` with their values (every token up to the next
    option: ``--seeds 1 2 3`` goes whole)."""
    kept, skipping = [], False
    for token in flags:
        if token.startswith("--"):
            skipping = token.split("=", 1)[0] in names
            if skipping:
                continue
        if not skipping:
            kept.append(token)
    return kept


def seed_parent(flags: list[str], env_id: str, policy: str) -> tuple[Path, bool]:
    """The parent: ``--run-dir`` if given, else ``runs/<env>__<policy>__seeds__<time>``,
    created at once (two started in one second took one name); and whether it was made here."""
    for index, token in enumerate(flags):
        if token == "--run-dir" and index + 1 < len(flags):
            return Path(flags[index + 1]), False
        if token.startswith("--run-dir="):
            return Path(token.split("=", 1)[1]), False
    name = f"{env_id.replace('/', '-').replace(':', '-')}__{policy}__seeds"
    return reserve_dir(Path("runs") / f"{name}__{time.strftime('%Y%m%d-%H%M%S')}"), True


def start_seeds(
    seeds: list[int], parallel: int, flags: list[str], parent: Path, made: bool = False
) -> int:
    """Write ``seeds.json`` in a new parent and run every seed; return the exit status. If no
    seed's run started (bad input: each said why), the parent is removed again (``made``: the
    folder too) and the status is 2, as for any bad input."""
    if len(set(seeds)) != len(seeds):
        if made:
            parent.rmdir()
        raise UserError(f"--seeds: each seed once, got {' '.join(map(str, seeds))}")
    if (parent / SEEDS_FILE).exists():
        raise UserError(
            f"'{parent}' already holds a multi-seed run; --resume {parent} continues it"
        )
    flags = without_flags(flags, {"--run-dir", "--seed", "--resume"})
    parent.mkdir(parents=True, exist_ok=True)
    (parent / SEEDS_FILE).write_text(json.dumps({"seeds": seeds, "flags": flags}, indent=2) + "\n")
    status = run_seeds(parent, parallel, [])
    if status == 2:
        (parent / SEEDS_FILE).unlink()
        if made:
            with contextlib.suppress(OSError):
                parent.rmdir()
        return 2
    return status


def is_seed_parent(path: Path) -> bool:
    return (path / SEEDS_FILE).is_file()


def run_seeds(parent: Path, parallel: int, extra_flags: list[str]) -> int:
    """Train (or resume) every seed of ``parent``, ``parallel`` at a time (0: as many as
    there are CPUs), then print the summary; return the exit status (0 when all finished,
    128 + the signal when one stopped them, 2 when none started: bad input)."""
    saved = json.loads((parent / SEEDS_FILE).read_text())
    flags = (*saved["flags"], *extra_flags)
    runs = [SeedRun(seed, parent / f"seed_{seed}", flags) for seed in saved["seeds"]]
    budget = cpu_budget().cpus
    parallel = min(parallel or budget, len(runs))
    print(
        f"puffertrain: {len(runs)} seeds in {parent}, {parallel} at a time "
        f"({budget} CPU(s); each run pinned to its share)",
        file=sys.stderr,
    )
    waiting = list(runs)
    failed, stopped_by = run_jobs(lambda: waiting.pop(0) if waiting else None, parallel)
    if failed and not stopped_by and not any(holds_run(run.run_dir) for run in runs):
        return 2  # no run started: bad input, which each said
    print_summary(runs)
    if failed or stopped_by:
        print(f"puffertrain: resume them all with --resume {parent}", file=sys.stderr)
    return 128 + stopped_by if stopped_by else int(failed)


def final_figures(run_dir: Path) -> tuple[float | None, float | None]:
    """A run's final return (the mean of its last 20 episodes) and its last SPS, as its
    TensorBoard events hold them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    returns = (
        [event.value for event in events.Scalars("charts/episodic_return")]
        if "charts/episodic_return" in tags
        else []
    )
    sps = events.Scalars("charts/SPS")[-1].value if "charts/SPS" in tags else None
    final = statistics.fmean(returns[-RECENT_EPISODES:]) if returns else None
    return final, sps


def trained_steps(run_dir: Path) -> tuple[int, bool]:
    """The steps a run's newest checkpoint holds, and whether the run reached its budget (one
    more update would pass --total-timesteps); (0, False) without a checkpoint."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        return 0, False
    saved = load_checkpoint(checkpoints[-1])
    update = saved.global_step // max(saved.iteration, 1)
    return saved.global_step, saved.global_step + update > saved.config["total_timesteps"]


def print_summary(runs: list[SeedRun]) -> None:
    """One table: each seed's final return, SPS and steps (a seed short of its budget marked),
    then the mean ± std over seeds."""
    started = [run for run in runs if run.run_dir.exists()]
    rows = [(run.seed, *final_figures(run.run_dir)) for run in started]
    print(f"{'seed':>6}  {'return (last 20)':>18}  {'SPS':>8}  {'steps':>12}")
    short = False
    for (seed, final, sps), run in zip(rows, started, strict=True):
        final_text = "—" if final is None else f"{final:.2f}"
        sps_text = "—" if sps is None else f"{sps:,.0f}"
        steps, done = trained_steps(run.run_dir)
        short |= not done
        print(f"{seed:>6}  {final_text:>18}  {sps_text:>8}  {steps:>11,}{' ' if done else '*'}")
    if short:
        print("     * short of its budget (stopped or failed): its return is not a final one")
    finals = [final for _, final, _ in rows if final is not None]
    speeds = [sps for _, _, sps in rows if sps is not None]
    if finals:
        spread = statistics.pstdev(finals) if len(finals) > 1 else 0.0
        mean_sps = f"{statistics.fmean(speeds):,.0f}" if speeds else "—"
        print(f"{'all':>6}  {statistics.fmean(finals):>10.2f} ± {spread:<5.2f}  {mean_sps:>8}")
