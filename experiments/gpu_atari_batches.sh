#!/usr/bin/env bash
# On a machine with a GPU: what one rollout action costs by batch size
# (experiments/gpu_act_cost.py), then the Atari preset's training SPS on Breakout with other
# numbers of envs and async batch sizes (0: all envs in one batch). Logs in OUT (default
# /tmp/gpu_atari_batches). Needs the trainer installed; run from the repository root:
#
#     bash experiments/gpu_atari_batches.sh
set -u
OUT=${OUT:-/tmp/gpu_atari_batches}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi -L
python3 experiments/gpu_act_cost.py --output "$OUT/act_cost.json" 2>&1 | tee "$OUT/act_cost.log"
for sizes in "8 4" "8 0" "32 16" "64 32" "64 0"; do
  read -r envs batch <<<"$sizes"
  log="$OUT/breakout_${envs}_${batch}.log"
  timeout 110 python3 -m puffertrain --env ALE/Breakout-v5 --policy cnn --device cuda \
    --num-envs "$envs" --env-batch-size "$batch" --total-timesteps 65536 \
    --run-dir "/tmp/gpu_ab_${envs}_${batch}" >"$log" 2>&1
  echo "== $envs envs, batches of $batch: exit $?"
  grep -E "adapted|SPS [0-9]|wall time" "$log" | tail -n 3
done
