#!/usr/bin/env bash
# Installs puffertrain (editable) with the pinned torch: the one install step of README's two
# commands, CI (.ci/run) and the Dockerfile.
#
#   bash install.sh           the trainer
#   bash install.sh dev       and the test tools (any extras from pyproject.toml, comma-separated)
#   bash install.sh --torch   torch alone (the Dockerfile's first layer)
#
# TORCH_INDEX_URL picks torch's build where pip's default would not fit, e.g.
# https://download.pytorch.org/whl/cpu (CPU only) or https://download.pytorch.org/whl/cu128.
set -euo pipefail
cd "$(dirname "$0")"
TORCH=torch==2.13.0
if [[ -n "${TORCH_INDEX_URL:-}" ]]; then
  pip install --index-url "$TORCH_INDEX_URL" "$TORCH"
elif [[ "${1:-}" == "--torch" ]]; then
  pip install "$TORCH"
fi
if [[ "${1:-}" != "--torch" ]]; then
  pip install "$TORCH" -e ".${1:+[$1]}"
fi
