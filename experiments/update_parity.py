"""One PPO update by puffertrain and by Stable-Baselines3 from the same weights and the same data.

    python experiments/update_parity.py [--env CartPole-v1] [--flags "..."] [--seed 1] [--output F]

The like-for-like comparisons (``vs_sb3.py``, ``learning_suite.py --trainer sb3``) give SB3 the
values puffertrain resolves, on the assumption that the two then run the same PPO. This checks
the update side of that directly: puffertrain's trainer collects its first rollout and computes
its advantages; SB3's ``PPO`` (built by ``vs_sb3.sb3_model`` from the same flags) gets a copy of
the policy's weights and that rollout (observations as the policy reads them, actions,
log-probabilities, values, advantages, returns) in its buffer; each runs its own update from a
fresh Adam at the first iteration's learning rate. It prints and writes how far the two updates'
parameters land apart, relative to how far the update moved them, per layer, and each side's
loss statistics. One minibatch per epoch (puffertrain's classic-control preset; pass
``--flags "--num-minibatches 1"`` elsewhere): with several, each side shuffles the batch its own
way and the updates differ by design. Needs the ``bench`` extra (SB3).
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from vs_sb3 import sb3_model  # this folder is on sys.path for scripts

from puffertrain.cli import parse_train_args
from puffertrain.trainer.loop import Trainer


def sb3_linear_layers(policy: nn.Module) -> list[nn.Linear]:
    """SB3 ``ActorCriticPolicy``'s linear layers in :meth:`KnownMLP.linear_layers`'s order: the
    actor's trunk, the critic's (where separate), the action head, the value head."""
    actor = [m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)]
    critic = [m for m in policy.mlp_extractor.value_net if isinstance(m, nn.Linear)]
    if not actor:  # puffertrain's shared trunk, given to SB3 as its features extractor
        actor = [m for m in policy.features_extractor.modules() if isinstance(m, nn.Linear)]
    return [*actor, *critic, policy.action_net, policy.value_net]


def copy_weights(trainer: Trainer, policy: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """Copy puffertrain's policy into SB3's; return the (puffertrain, SB3) layer pairs."""
    known = trainer.adapter.known_mlp
    if known is None:
        raise SystemExit("update_parity: the policy must be one of the library's MLPs")
    pairs = list(zip(known.linear_layers(), sb3_linear_layers(policy), strict=True))
    with torch.no_grad():
        for ours, theirs in pairs:
            if ours.weight.shape != theirs.weight.shape:
                raise SystemExit(f"update_parity: layer shapes differ: {ours} vs {theirs}")
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
        if known.log_std is not None:
            policy.log_std.copy_(known.log_std.reshape(-1))
    return pairs


def fill_sb3_buffer(trainer: Trainer, model) -> None:
    """SB3's rollout buffer holding puffertrain's rollout, observations normalised as the policy
    reads them (SB3's ``VecNormalize`` stores them normalised)."""
    buffer, policy = trainer.buffer, trainer.adapter.policy
    observations = buffer.observations.float()
    if hasattr(policy, "normalize"):
        observations = policy.normalize(observations)
    target = model.rollout_buffer
    target.reset()
    actions = buffer.actions.reshape(*buffer.actions.shape[:2], -1).float()
    for name, value in {
        "observations": observations,
        "actions": actions,
        "log_probs": buffer.log_probs,
        "values": buffer.values,
        "advantages": buffer.advantages,
        "returns": buffer.returns,
        "rewards": buffer.rewards,
    }.items():
        getattr(target, name)[:] = value.detach().numpy().reshape(getattr(target, name).shape)
    target.full, target.pos, target.generator_ready = True, target.buffer_size, False


def stored_scores_gap(model, continuous: bool) -> dict[str, float]:
    """How far SB3's log-probabilities and values of the steps in its buffer are from the
    ones puffertrain stored while acting: the two networks agree before the update."""
    buffer = model.rollout_buffer
    obs = torch.as_tensor(buffer.observations.reshape(-1, *buffer.obs_shape))
    actions = torch.as_tensor(buffer.actions.reshape(-1, buffer.action_dim))
    if not continuous:
        actions = actions.reshape(-1).long()
    with torch.no_grad():
        values, log_probs, _ = model.policy.evaluate_actions(obs, actions)
    stored_log_probs = torch.as_tensor(buffer.log_probs).reshape(-1)
    stored_values = torch.as_tensor(buffer.values).reshape(-1)
    return {
        "log_prob_max_diff": float((log_probs - stored_log_probs).abs().max()),
        "value_max_diff": float((values.reshape(-1) - stored_values).abs().max()),
    }


def parameters(layers: list[nn.Module], log_std: torch.Tensor | None) -> list[torch.Tensor]:
    """Copies of the layers' weights and biases, then the log-std (flat) where there is one."""
    copies = [p.detach().clone() for layer in layers for p in (layer.weight, layer.bias)]
    return copies if log_std is None else [*copies, log_std.detach().reshape(-1).clone()]


def compare(env_id: str, flags: list[str], seed: int) -> dict:
    from stable_baselines3.common.logger import configure

    common = ["--seed", str(seed), "--num-minibatches", "1", *flags]
    config, _ = parse_train_args(["--env", env_id, "--eval-interval", "0", *common])
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, Path(run_dir), None)
        trainer.rollout.collect(trainer.buffer)
        ppo = config.ppo
        trainer.buffer.compute_advantages(
            trainer.rollout.bootstrap_values(), ppo.gamma, ppo.gae_lambda
        )
        model, _ = sb3_model(env_id, common)
        pairs = copy_weights(trainer, model.policy)
        fill_sb3_buffer(trainer, model)
        ours_layers, theirs_layers = [p[0] for p in pairs], [p[1] for p in pairs]
        our_log_std, their_log_std = trainer.adapter.known_mlp.log_std, None
        if our_log_std is not None:
            their_log_std = model.policy.log_std
        start = parameters(ours_layers, our_log_std)
        before = stored_scores_gap(model, trainer.adapter.continuous)

        learning_rate = trainer.learner.learning_rate(1, trainer.num_iterations)
        ours_stats = trainer.learner.update(trainer.buffer, learning_rate)
        model.set_logger(configure(None, [""]))
        model._current_progress_remaining = 1.0  # SB3's schedule at its first update
        model.train()
        theirs_stats = dict(model.logger.name_to_value)
        trainer.rollout.engine.close()

    layers = []
    after_ours = parameters(ours_layers, our_log_std)
    after_theirs = parameters(theirs_layers, their_log_std)
    names = [f"{i}.{part}" for i in range(len(ours_layers)) for part in ("weight", "bias")]
    names += ["log_std"] if our_log_std is not None else []
    for name, s, a, b in zip(names, start, after_ours, after_theirs, strict=True):
        moved = float((a - s).norm())
        layers.append(
            {
                "parameter": name,
                "update_norm": moved,
                "sb3_update_norm": float((b - s).norm()),
                "apart": float((a - b).norm()),
                "apart_over_update": float((a - b).norm()) / max(moved, 1e-12),
            }
        )
    total_moved = sum(layer["update_norm"] ** 2 for layer in layers) ** 0.5
    total_apart = sum(layer["apart"] ** 2 for layer in layers) ** 0.5
    return {
        "env": env_id,
        "flags": common,
        "learning_rate": learning_rate,
        "before_update": before,
        "apart_over_update": total_apart / total_moved,
        "layers": layers,
        "puffertrain_stats": {k: float(v) for k, v in ours_stats.items()},
        "sb3_stats": {k: float(v) for k, v in theirs_stats.items() if k.startswith("train/")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--flags", default="", help="puffertrain flags, given to both")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    result = compare(args.env, shlex.split(args.flags), args.seed)
    result["date"] = time.strftime("%Y-%m-%d %H:%M")
    print(
        f"{args.env}: before the update, SB3's scores of the stored steps differ by "
        f"{result['before_update']['log_prob_max_diff']:.2e} (log-prob), "
        f"{result['before_update']['value_max_diff']:.2e} (value)"
    )
    for layer in result["layers"]:
        print(
            f"  {layer['parameter']:10s} moved {layer['update_norm']:.4e} (SB3 "
            f"{layer['sb3_update_norm']:.4e}), apart {layer['apart']:.3e} = "
            f"{layer['apart_over_update']:.2e} of the update"
        )
    print(f"all parameters: apart / moved = {result['apart_over_update']:.3e}")
    print("puffertrain:", json.dumps(result["puffertrain_stats"]))
    print("SB3:", json.dumps(result["sb3_stats"]))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
