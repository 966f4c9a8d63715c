"""How far one PPO update moves the policy, with and without the critic's gradient: from a
run's checkpoint, collect the next rollout as the run would, then make that update twice from
the same weights, optimizer state and data, once as the run makes it and once with
``--vf-coef 0`` (no value-loss gradient reaches the layers the actor and critic share). Prints
the policy's KL from the rollout's policy after each (over the whole batch) and its clip
fraction. ``--rate-scales`` makes it at fractions of the schedule's learning rate too.

    python experiments/critic_share.py RUN_DIR/checkpoints/step_N.pt [...] --output F.json

A network whose actor and critic share a trunk (the library's ``mlp``) lets the value loss
move what the actor reads; PPO's clip bounds only the policy loss's own pull. If the
critic's gradient is what carries an update's KL past what the clip holds, the KL with it is
far above the KL without it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
from pathlib import Path

import torch

from puffertrain.config import from_dict
from puffertrain.ppo.loss import ppo_loss
from puffertrain.trainer.checkpoint import load_checkpoint
from puffertrain.trainer.loop import Trainer


def one_update(
    checkpoint_path: Path, vf_coefs: list[float], rate_scales: list[float], scratch: Path
) -> dict:
    """The checkpoint's next update with each of ``vf_coefs`` and each of ``rate_scales`` (on
    the schedule's learning rate), from the same start."""
    state = load_checkpoint(checkpoint_path)
    config = dataclasses.replace(from_dict(state.config), eval_interval=0)
    trainer = Trainer(config, scratch, state)
    try:
        trainer.iteration += 1
        rate = trainer.learner.learning_rate(trainer.iteration, trainer.num_iterations)
        trainer.rollout.collect(trainer.buffer)
        last_values = trainer.rollout.bootstrap_values()
        trainer.buffer.compute_advantages(last_values, config.ppo.gamma, config.ppo.gae_lambda)
        policy_start = copy.deepcopy(trainer.adapter.policy.state_dict())
        optimizer_start = copy.deepcopy(trainer.learner.optimizer.state_dict())
        rng_start = torch.get_rng_state()
        results: dict[str, dict[str, float]] = {}
        for vf_coef, rate_scale in itertools.product(vf_coefs, rate_scales):
            trainer.adapter.policy.load_state_dict(policy_start)
            trainer.learner.optimizer.load_state_dict(optimizer_start)
            torch.set_rng_state(rng_start)  # the same minibatch order
            ppo = dataclasses.replace(config.ppo, vf_coef=vf_coef)
            trainer.learner.config = trainer.learner.objective.config = ppo
            during = trainer.learner.update(trainer.buffer, rate * rate_scale)
            whole = next(next(trainer.buffer.minibatches(1, 1)))
            with torch.no_grad():
                _, after = ppo_loss(trainer.adapter, whole, ppo)
            results[f"vf_coef={vf_coef} rate x{rate_scale:.3g}"] = {
                "kl_after_update": float(after["approx_kl"]),
                "clipfrac_after_update": float(after["clipfrac"]),
                "mean_kl_during_update": during["approx_kl"],
                "entropy": during["entropy"],
            }
        return {"learning_rate": rate, "step": state.global_step, **results}
    finally:
        trainer.engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--vf-coefs", type=float, nargs="+", default=[0.5, 0.0])
    parser.add_argument("--rate-scales", type=float, nargs="+", default=[1.0])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/critic_share"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    table = {}
    for path in args.checkpoints:
        table[str(path)] = one_update(path, args.vf_coefs, args.rate_scales, args.scratch)
        print(path, json.dumps(table[str(path)], indent=1))
    if args.output:
        args.output.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
