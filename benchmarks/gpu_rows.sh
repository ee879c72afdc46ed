#!/bin/bash
# The GPU rows that issues 18, 19 and 22 ask for, in one device run (about 6-8 minutes on an H200; every
# step has its own time limit, so one that hangs costs only its own row). On the device machine, from the
# repo root, after `bash benchmarks/gpu_wheels.sh` here:
#   run(command="bash benchmarks/gpu_rows.sh", carry=[".whl", ".whl-d3"], timeout_s=570)
# Writes one JSON file per row, gpu.txt and stderr.log to $OUT (8 files: the most the device tool returns).
#   dqn.json           DQN CartPole-v1 env-steps/s against SB3 on the GPU, eager and torch.compile (issue 18)
#   sac_pendulum.json  SAC env-steps/s against SB3 on the GPU: fp32, bf16 autocast, torch.compile (issue 18)
#   sac_cheetah.json   the same on HalfCheetah-v5
#   offline.json       CQL and IQL updates/s against d3rlpy, both on the GPU (issue 19)
#   offline_bf16.json  the same with dynarl's learner.precision=bf16
#   vector.json        64 SAC seeds vectorised in one process against sequential runs, on the GPU (issue 22)
# DEVICE=cpu QUICK=1 SKIP_WHEELS=1 PY=python D3PY=... runs the same steps small on a CPU, to check the script.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_rows}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
if [ -z "${SKIP_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site_d3 .whl-d3/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
  printf '#!/bin/bash\nPYTHONPATH=/tmp/site_d3 exec %s "$@"\n' "$PY" > /tmp/d3python && chmod +x /tmp/d3python
  D3PY=/tmp/d3python
fi
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl OMP_NUM_THREADS=1
if [ -n "${QUICK:-}" ]; then
  DQN_STEPS=1500; SAC_STEPS=50; OFF_STEPS=5; VEC="--seeds 4 --steps 260 --learning-starts 250 --sequential-seeds 2"
else
  DQN_STEPS=10000; SAC_STEPS=1000; OFF_STEPS=200; VEC="--seeds 64 --steps 600 --learning-starts 300 --sequential-seeds 4"
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/gpu.txt"
step() {
  local name=$1 limit=$2; shift 2
  echo "== $(date -u +%T) $name: $*" | tee -a "$OUT/stderr.log"
  timeout "$limit" "$@" > "$OUT/$name.json" 2>> "$OUT/stderr.log"
  echo "rc=$? $(tail -c 400 "$OUT/$name.json")"
}
step dqn 150 $PY benchmarks/dqn_speed.py --steps $DQN_STEPS --repeats 1 --device $DEVICE --compile
step sac_pendulum 150 $PY benchmarks/sac_speed.py --measure-steps $SAC_STEPS --envs Pendulum-v1 --compile --device $DEVICE
step sac_cheetah 120 $PY benchmarks/sac_speed.py --measure-steps $SAC_STEPS --envs HalfCheetah-v5 --device $DEVICE
step offline 90 $PY benchmarks/offline_speed.py --steps $OFF_STEPS --warmup 10 --repeats 1 --d3rlpy-python "$D3PY" --device $DEVICE
step offline_bf16 90 $PY benchmarks/offline_speed.py --steps $OFF_STEPS --warmup 10 --repeats 1 --d3rlpy-python "$D3PY" --device $DEVICE --precision bf16
step vector 120 $PY benchmarks/vector_seeds.py --algos sac $VEC --device $DEVICE
echo "== $(date -u +%T) done"
