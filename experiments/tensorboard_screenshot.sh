#!/usr/bin/env bash
# Screenshots of TensorBoard showing a run's eval curve and its eval video, taken by headless
# Chromium (Debian's chromium package):
#
#   bash experiments/tensorboard_screenshot.sh experiments/results/tensorboard_eval
#
# It trains CartPole-v1 with the preset for 60k steps, evaluating every 10 updates and recording
# every 3rd evaluation, and writes PREFIX_curve.png (the scalars tab, eval/episodic_return) and
# PREFIX_video.png (the images tab, the last eval/video, an animated GIF there).
set -euo pipefail
prefix=$(realpath -m "${1:?usage: $0 OUTPUT_PREFIX}")
work=$(mktemp -d)
trap 'kill "${board:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
python -m puffertrain --env CartPole-v1 --vec serial --total-timesteps 60000 --seed 1 \
  --eval-interval 10 --video-interval 3 --run-dir "$work/runs/cartpole" >/dev/null
tensorboard --logdir "$work/runs" --port 6123 --host localhost >"$work/board.log" 2>&1 &
board=$!
for _ in $(seq 30); do
  curl -sf http://localhost:6123 >/dev/null && break
  sleep 1
done
for page in "curve:#scalars&tagFilter=eval%2Fepisodic_return%24" "video:#images&tagFilter=eval"; do
  chromium --headless --no-sandbox --use-angle=swiftshader --enable-unsafe-swiftshader \
    --disable-background-networking --disable-component-update --disable-sync --no-first-run \
    --hide-scrollbars --run-all-compositor-stages-before-draw --window-size=1100,700 \
    --virtual-time-budget=40000 --screenshot="${prefix}_${page%%:*}.png" \
    "http://localhost:6123/${page#*:}" 2>/dev/null
done
echo "written: ${prefix}_curve.png ${prefix}_video.png"
