#!/usr/bin/env bash
# The CUDA paths end to end on a machine with a GPU, each step timed, logs in OUT (default
# /tmp/gpu_check): the Atari preset on Breakout (compiled, bf16, native engine), a resume of it,
# eval and ONNX export of its checkpoint, the LSTM policy on CartPole, a masked env, and the
# Breakout preset again with 32 and 64 envs. Needs the trainer installed (and the dev extra for
# the masked env); run from the repository root:
#
#     bash experiments/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
step() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "== $name: exit $?, $((SECONDS - start)) s"
  grep -E "engine|precision|threads:|SPS|wall time|score|written|error" "$OUT/$name.log" | tail -n 5
}
train="python3 -m puffertrain"
step breakout 200 $train --env ALE/Breakout-v5 --policy cnn --device cuda --total-timesteps 196608 --run-dir /tmp/gpu_b1
step resume 100 $train --resume /tmp/gpu_b1 --total-timesteps 229376
step eval 60 $train eval --checkpoint /tmp/gpu_b1 --episodes 2
step export 60 $train export --checkpoint /tmp/gpu_b1 --format onnx --output /tmp/gpu_b1.onnx
step lstm 80 $train --env CartPole-v1 --policy lstm --device cuda --total-timesteps 30720 --run-dir /tmp/gpu_c1
step masked 40 $train --env tests.masked_envs:Selection --env-kwargs '{"n": 16, "legal": 2, "length": 16, "mask": "info"}' --policy mlp --device cuda --total-timesteps 16384 --run-dir /tmp/gpu_m1
for envs in 32 64; do
  step "envs$envs" 150 $train --env ALE/Breakout-v5 --policy cnn --device cuda --num-envs "$envs" --total-timesteps 196608 --run-dir "/tmp/gpu_e$envs"
done
