#!/bin/bash
# Run HERE (with package-index access) before a device run: fetches the wheels that the GPU machine's image
# lacks, for its Python 3.12 on x86-64, into two folders that `run` carries (git ignores both):
#   .whl/     dynarl's side: gymnasium 1.4, stable-baselines3, MuJoCo (for HalfCheetah)
#   .whl-d3/  d3rlpy's side, installed apart: d3rlpy pins gymnasium 1.0 and needs gym (no wheel on PyPI: built here)
# About 25 MB in all. Then: run(command="bash benchmarks/gpu_rows.sh", carry=[".whl", ".whl-d3"], timeout_s=570).
set -euo pipefail
cd "$(dirname "$0")/.."
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
get() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms -d "$@"; }
rm -rf .whl .whl-d3
get .whl gymnasium==1.4.0 farama-notifications==0.0.6 stable-baselines3==2.9.2 mujoco==4.0.1 mujoco-core==4.0.1 mujoco-studio==4.0.1 glfw==2.11.0 pyopengl==3.1.10
get .whl-d3 d3rlpy==2.8.1 gymnasium==1.0.0 farama-notifications==0.0.6 gym-notices==0.1.0 structlog==25.4.0 dataclasses-json==0.6.7 marshmallow==3.26.1 typing-inspect==0.9.0 mypy-extensions==1.1.0
python3 -m pip wheel -q --no-deps -w .whl-d3 gym==0.26.2  # pure Python, sdist only
du -sh .whl .whl-d3
