# puffertrain: the trainer as an image. CPU by default:
#   docker build -t puffertrain .
#   docker run --init --rm -v "$PWD/runs:/work/runs" puffertrain --env ALE/Breakout-v5 --policy cnn
# CUDA (an Ubuntu 22.04 CUDA base image, python3.11 from apt, torch's CUDA build; --gpus all):
#   docker build -t puffertrain:cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    DEBIAN_FRONTEND=noninteractive \
    TRITON_CACHE_DIR=/tmp/triton \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Python 3.11 where the base image has none (the Ubuntu-based CUDA images), in a venv
# hadolint ignore=DL3008
RUN if ! command -v python3.11 > /dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3.11 -m venv /opt/venv

# The same install step as README's commands and CI (the ROMs come with ale-py); torch first,
# in a layer of its own that source changes do not rebuild
WORKDIR /opt/puffertrain
COPY install.sh ./
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" bash install.sh --torch
COPY pyproject.toml README.md ./
COPY puffertrain ./puffertrain
COPY policies ./policies
RUN bash install.sh

# Runs as a non-root user; run directories go to runs/ under /work, meant to be a mounted volume
RUN (id -u 1000 > /dev/null 2>&1 || useradd --create-home --uid 1000 puffer) \
    && mkdir -p /work/runs \
    && chown -R 1000 /work
USER 1000
WORKDIR /work
VOLUME ["/work/runs"]
ENTRYPOINT ["python", "-m", "puffertrain"]
CMD ["--help"]
