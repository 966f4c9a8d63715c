"""``torchrun ... tests/distributed_harness.py OUT_DIR TRAIN_ARGS...``: the trainer's CLI, with
checks a test reads back from ``OUT_DIR/rank<R>.json``.

After every update each rank compares its parameters and buffers (observation statistics)
with every other rank's; it counts the env steps it took itself and notes its first
observations and its pid (in ``rank<R>.pid`` at once, so a test can kill it). When the CLI
returns it notes the names of the process's threads still running.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch.nn.utils import parameters_to_vector

from puffertrain import cli
from puffertrain.distributed import Ranks, all_gather
from puffertrain.ppo.learner import Learner
from puffertrain.rollout import Rollout


def main() -> None:
    out_dir, args = Path(sys.argv[1]), sys.argv[2:]
    ranks = Ranks.from_env()
    (out_dir / f"rank{ranks.rank}.pid").write_text(str(os.getpid()))
    report = {"updates": 0, "identical_after_every_update": True, "local_steps": 0}

    original_update, original_receive = Learner.update, Rollout.receive

    def update(self, buffer, learning_rate):
        stats = original_update(self, buffer, learning_rate)
        # parameters and persistent buffers (observation statistics), not constants
        state = [tensor.float() for tensor in self.adapter.state_dict().values()]
        mine = parameters_to_vector(state).detach().cpu()
        everyone = all_gather(mine)
        report["updates"] += 1
        report["identical_after_every_update"] &= all(torch.equal(mine, o) for o in everyone)
        report["first_parameters_sum"] = report.get("first_parameters_sum", float(mine.sum()))
        report["last_parameters_sum"] = float(mine.sum())
        return stats

    def receive(self, buffer=None):
        result = original_receive(self, buffer)
        report["local_steps"] += len(result.row_ids)
        report.setdefault("first_observations", result.observations[:2].tolist())
        return result

    Learner.update, Rollout.receive = update, receive
    try:
        cli.main(args)
    finally:
        report["threads_after_run"] = thread_names()
        (out_dir / f"rank{ranks.rank}.json").write_text(json.dumps(report))


def thread_names() -> list[str]:
    """The names of this process's threads (Linux), or none where /proc does not list them."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return []
    return sorted((task / "comm").read_text().strip() for task in tasks.iterdir())


if __name__ == "__main__":
    main()
