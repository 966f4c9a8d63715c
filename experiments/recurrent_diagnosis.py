"""Why ``--policy lstm`` did not learn hidden-velocity CartPole (issue #22): per-update
gradient diagnostics of the PPO loss, one change at a time.

For the first minibatch of every update (epoch 0, before any step of that update) it records:
the largest |ratio - 1| (must be 0: the update re-scores the rollout exactly), the gradient
norm of the policy term alone and of the (vf_coef-scaled) value term alone at each parameter
group (encoder, lstm, actor, critic), and the LSTM output the heads read (mean |h|, share of
|h| > 0.9, mean std over rows); over all minibatches the mean global gradient norm and the
clipping factor ``min(1, max_grad_norm / norm)``; plus the update's entropy, approx_kl,
explained variance and the mean return of the last 20 episodes.

    python experiments/recurrent_diagnosis.py --preset default --variant baseline --seed 1 \
        --steps 40960 --total 60000

``--preset classic`` is the classic-control preset; ``default`` the generic values (CleanRL's
ppo.py) that a ``module:callable`` id such as ``tests.envs:cartpole_no_velocity`` got before
the env family was read from the built env. Variants change one thing each: ``baseline`` (the
library's policy), ``detach`` (the critic head reads the LSTM output detached, sb3-contrib's
shared_lstm), ``noclip`` (no gradient-norm clipping), ``vf_small`` (vf_coef 0.05), ``mlp``
(the feed-forward policy); ``--no-clip-vloss`` drops value clipping (SB3's default),
``--normalize-reward`` scales rewards by their return's std (the fix: results in
experiments/RESULTS.md, "Root cause with the classic-control values") and ``--learning-rate``
overrides the preset's.

Measured (2-core box shared with other jobs, one torch thread, seeds as given):
- generic values, seed 1, 41k steps: entropy 0.6931 at the first update and 0.6931 at the last,
  approx_kl 1e-6..3e-4, return 24: the issue's symptom. At the LSTM the value term's gradient
  was 1-7 and the policy term's 2e-4..4e-3; clip factor 0.08-0.4. Without clipping
  (``noclip``) the same: entropy 0.691, return 19, so the clip is not what holds it.
  ``detach``: entropy 0.627, return 28. The MLP: entropy 0.691, return 28. The generic values
  with the preset's ``--learning-rate 1e-3``: entropy 0.692, return 26, so the learning rate
  alone is not what the preset changes that matters.
- classic-control preset, 41k steps: entropy 0.50 / 0.57 / 0.59 and return 149 / 34 / 29
  (seeds 1 / 2 / 3); the policy moves on every seed. Seed 1 at 100k: return 240. The value
  term dominates the LSTM's gradient here too (0.9-29 against the policy's 1e-4..1.7; clip
  factor 0.03-0.85, mostly 0.1-0.3), yet the policy learns.
- classic preset, ``detach``: seeds 2 / 3 at 41k: return 36 / 100 (faster early); seed 1
  through the CLI: 29 at 100k, 106 at 300k, explained variance mostly below 0 (a linear
  critic on features only the policy trains predicts poorly). ``--no-clip-vloss``, seed 1:
  52 at 100k. Neither is an improvement to make the default.
- epoch 0: |ratio - 1| <= 4e-6 on every update (exactly 0 at the first): the update's
  sequences, start states and episode resets line up with the rollout's.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
from collections import deque
from pathlib import Path

import torch

from puffertrain.config import TrainConfig
from puffertrain.ppo import loss as loss_module
from puffertrain.ppo.loss import normalized
from puffertrain.presets import CLASSIC_CONTROL
from puffertrain.trainer.loop import Trainer

GROUPS = ("encoder", "lstm", "actor", "critic")


def group_of(name: str) -> str:
    """The parameter group of a parameter name (encoder, lstm, actor or critic)."""
    for group in GROUPS:
        if group in name or (group == "lstm" and ".cell." in name):
            return group
    return "other"


def group_norms(named_grads: list[tuple[str, torch.Tensor | None]]) -> dict[str, float]:
    squares: dict[str, float] = {}
    for name, grad in named_grads:
        if grad is not None:
            key = group_of(name)
            squares[key] = squares.get(key, 0.0) + float(grad.pow(2).sum())
    return {key: math.sqrt(value) for key, value in squares.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--variant", default="baseline", choices=("baseline", "detach", "noclip", "vf_small", "mlp")
    )
    parser.add_argument(
        "--preset",
        default="classic",
        choices=("classic", "default"),
        help="classic-control preset, or the generic defaults a `module:callable` id gets",
    )
    parser.add_argument(
        "--no-clip-vloss", action="store_true", help="an unclipped value loss (SB3's default)"
    )
    parser.add_argument(
        "--normalize-reward", action="store_true", help="rewards scaled by their return's std"
    )
    parser.add_argument("--learning-rate", type=float, help="override the preset's")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=61_440, help="env steps to run")
    parser.add_argument("--total", type=int, default=300_000, help="LR annealing horizon")
    parser.add_argument("--every", type=int, default=10, help="print every N updates")
    args = parser.parse_args()

    base = CLASSIC_CONTROL if args.preset == "classic" else TrainConfig()
    ppo = dataclasses.replace(base.ppo)
    if args.variant == "noclip":
        ppo.max_grad_norm = 1e9
    if args.variant == "vf_small":
        ppo.vf_coef = 0.05
    ppo.clip_vloss = not args.no_clip_vloss
    ppo.learning_rate = args.learning_rate or ppo.learning_rate
    config = dataclasses.replace(
        base,
        env="tests.envs:cartpole_no_velocity",
        policy="mlp" if args.variant == "mlp" else "lstm",
        vec="serial",
        device="cpu",
        seed=args.seed,
        total_timesteps=args.total,
        normalize_reward=args.normalize_reward,
        ppo=ppo,
    )
    torch.set_num_threads(1)  # the 2-core box is shared: one thread measured 6x faster updates
    trainer = Trainer(config, Path(tempfile.mkdtemp()), None)
    agent, learner = trainer.adapter, trainer.learner
    heads = agent.policy.policy if agent.recurrent else agent.policy
    critic_input = (lambda h: h.detach()) if args.variant == "detach" else (lambda h: h)

    def decode_actions(hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if "hidden" not in record:  # the features the heads read, at the update's first call
            h = hidden.detach()
            record["hidden"] = (
                float(h.abs().mean()),
                float((h.abs() > 0.9).float().mean()),
                float(h.std(0).mean()),
            )
        return heads.actor(hidden), heads.critic(critic_input(hidden))

    heads.decode_actions = decode_actions
    named = [(name, p) for name, p in agent.named_parameters()]
    record: dict[str, object] = {}
    norms: list[float] = []

    original_step = learner.flat.clip_and_step

    def clip_and_step(max_norm: float) -> torch.Tensor:
        norm = original_step(max_norm)
        norms.append(float(norm))
        return norm

    learner.flat.clip_and_step = clip_and_step
    original_loss = loss_module.ppo_loss

    def instrumented(agent_, batch, ppo_config):
        loss, stats = original_loss(agent_, batch, ppo_config)
        if "ratio" not in record:  # first minibatch of the update: split the gradient
            log_probs, _, values = agent_.evaluate(
                batch.observations, batch.actions, batch.states, batch.episode_starts
            )
            ratio = (log_probs - batch.log_probs).exp()
            advantages = normalized(batch.advantages, None)
            clip_coef = ppo_config.clip_coef
            policy_loss = torch.max(
                -advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)
            ).mean()
            clipped = batch.values + (values - batch.values).clamp(-clip_coef, clip_coef)
            value_error = (values - batch.returns) ** 2
            if ppo_config.clip_vloss:
                value_error = torch.max(value_error, (clipped - batch.returns) ** 2)
            value_loss = 0.5 * value_error.mean()
            params = [p for _, p in named]
            for term, value in (("pg", policy_loss), ("vf", ppo_config.vf_coef * value_loss)):
                grads = torch.autograd.grad(value, params, allow_unused=True, retain_graph=True)
                record[term] = group_norms(list(zip([n for n, _ in named], grads, strict=True)))
            record["ratio"] = float((ratio - 1).detach().abs().max())
            record["returns_max"] = float(batch.returns.abs().max())
        return loss, stats

    learner.objective.loss_fn = instrumented
    recent: deque[float] = deque(maxlen=20)
    iterations = args.steps // (config.num_envs * config.num_steps)
    print(
        f"variant={args.variant} preset={args.preset} seed={args.seed} "
        f"clip_vloss={ppo.clip_vloss} lr={ppo.learning_rate} "
        f"normalize_reward={args.normalize_reward} "
        "columns: step ret20 entropy approx_kl |ratio-1|@0 |R|max gnorm clipfactor "
        "pg[enc,lstm,actor] vf[enc,lstm,critic] h[mean|h|,frac|h|>0.9,mean std over rows]"
    )
    for iteration in range(1, iterations + 1):
        trainer.iteration = iteration
        lr = learner.learning_rate(iteration, trainer.num_iterations)
        trainer.rollout.collect(trainer.buffer)
        recent.extend(episode.score for _, episode in trainer._gather_episodes())
        last = trainer.rollout.bootstrap_values()
        trainer.buffer.compute_advantages(last, ppo.gamma, ppo.gae_lambda)
        record.clear()
        norms.clear()
        stats = learner.update(trainer.buffer, lr)
        if iteration % args.every == 0 or iteration in (1, 2, iterations):
            pg, vf = record["pg"], record["vf"]
            mean_norm = sum(norms) / len(norms)
            factor = sum(min(1.0, ppo.max_grad_norm / n) for n in norms) / len(norms)
            ret = sum(recent) / max(1, len(recent))
            print(
                f"{trainer.global_step:7d} {ret:6.1f} {stats['entropy']:.4f} "
                f"{stats['approx_kl']:.2e} {record['ratio']:.1e} {record['returns_max']:5.1f} "
                f"{mean_norm:7.3f} {factor:.3f} "
                f"pg[{pg.get('encoder', 0):.2e},{pg.get('lstm', 0):.2e},{pg.get('actor', 0):.2e}] "
                f"vf[{vf.get('encoder', 0):.2e},{vf.get('lstm', 0):.2e},"
                f"{vf.get('critic', 0):.2e}] "
                "h[{:.3f},{:.3f},{:.3f}] ev {:.2f}".format(
                    *record["hidden"], stats["explained_variance"]
                ),
                flush=True,
            )
    trainer.engine.close()


if __name__ == "__main__":
    main()
