"""Play an env with a policy exported by ``puffertrain export --format onnx``, using onnxruntime
alone: neither torch nor puffertrain is imported here.

    python -m puffertrain export --checkpoint runs/<run> --output policy.onnx
    python examples/deploy_onnx.py policy.onnx --env CartPole-v1 --episodes 10
    python examples/deploy_onnx.py policy.onnx --env ALE/Breakout-v5 --atari --episodes 3

Actions are greedy (the most likely one), as ``puffertrain eval --deterministic`` takes them.
It plays Box observations (Atari frames included) of single-agent envs without action masks,
and says so in one line for any other graph.
``--atari`` builds the frames as puffertrain's recipe does, from gymnasium's wrappers (noop
starts, 4-frame skip with max-pooling, 84×84 grey, FIRE pressed on reset, 4 frames stacked,
sticky actions as registered), so a game plays as it does in ``puffertrain eval``.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import onnxruntime as ort


class PressFireOnReset(gym.Wrapper):
    """Start each game by pressing FIRE, in games that wait for it (Breakout's ball): the
    frames the policy first sees are those after it, as in training."""

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        meanings = self.env.unwrapped.get_action_meanings()
        if "FIRE" in meanings:
            obs, _, terminated, truncated, info = self.env.step(meanings.index("FIRE"))
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


def make_env(env_id: str, atari: bool) -> gym.Env:
    if not atari:
        return gym.make(env_id)
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make(env_id, frameskip=1)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
    return gym.wrappers.FrameStackObservation(PressFireOnReset(env), 4)


def greedy(logits: np.ndarray, action_space: gym.spaces.Space) -> np.ndarray | int:
    """The most likely action (each dimension's, for MultiDiscrete; each bit's, from its pair
    of logits, for MultiBinary), offset by the space's ``start`` as the env takes it (the
    logits index 0 to n - 1)."""
    if isinstance(action_space, gym.spaces.MultiBinary):
        pairs = logits[0].reshape(-1, 2)
        return pairs.argmax(axis=1).astype(np.int8).reshape(action_space.shape)
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        blocks = np.split(logits[0], np.cumsum(action_space.nvec)[:-1])
        return np.array([block.argmax() for block in blocks]) + action_space.start
    return int(logits[0].argmax()) + int(action_space.start)


def _unplayable(space: gym.spaces.Space, inputs: dict) -> str:
    """Why this example cannot play the graph on the env ("" if it can): it feeds a Box
    observation as it is, and no action mask or agent ids."""
    if not isinstance(space, gym.spaces.Box):
        return (
            f"the env's {type(space).__name__} observations go in as the byte rows of "
            "policies.flatten.flatten_observation(obs, space), which this example does not build"
        )
    extra = [name for name in ("action_mask", "agent_ids") if name in inputs]
    if extra:
        return f"the graph also takes {' and '.join(extra)}, which this example does not feed"
    return ""


DTYPES = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(int64)": np.int64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy")
    parser.add_argument("--env", required=True)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--atari", action="store_true")
    args = parser.parse_args()
    session = ort.InferenceSession(args.policy)
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    obs_dtype = DTYPES[inputs["obs"].type]
    zero_state = {
        name: np.zeros((1, inputs[name].shape[1]), np.float32)
        for name in ("state_h", "state_c")
        if name in inputs
    }
    env = make_env(args.env, args.atari)
    unplayable = _unplayable(env.observation_space, inputs)
    if unplayable:
        raise SystemExit(f"deploy_onnx.py: {unplayable}")
    obs, _ = env.reset(seed=args.seed)  # game i is seeded --seed + i, as in puffertrain eval
    state, score, scores = dict(zero_state), 0.0, []
    while len(scores) < args.episodes:
        feed = {"obs": np.asarray(obs, dtype=obs_dtype)[None], **state}
        result = dict(zip(outputs, session.run(None, feed), strict=True))
        if "new_state_h" in result:
            state = {"state_h": result["new_state_h"], "state_c": result["new_state_c"]}
        if "mean" in result:
            action = result["mean"][0]
        else:
            action = greedy(result["logits"], env.action_space)
        obs, reward, terminated, truncated, _ = env.step(action)
        score += float(reward)
        if terminated or truncated:
            scores.append(score)
            print(f"episode {len(scores)}: {score:g}")
            state, score = dict(zero_state), 0.0
            obs, _ = env.reset(seed=args.seed + len(scores))
    print(f"{args.env}: {np.mean(scores):.2f} ± {np.std(scores):.2f} over {len(scores)} episodes")


if __name__ == "__main__":
    main()
