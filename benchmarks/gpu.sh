#!/usr/bin/env bash
# The one-shot GPU check (issue 37): on a machine with an NVIDIA GPU, in at most about 9 minutes,
# install the cuda extra, run the tests that exercise the device paths (device replay, bfloat16,
# seeds trained together, resume), and measure the update's cost and the training throughput of
# the direct and iterative agents (one seed and 5, float32 and bfloat16) on Hopper-v5 and
# Humanoid-v5, and the iterative update with its two optimizer runs in one scan; everything goes
# to one results file.
#
#   bash benchmarks/gpu.sh          # GPU: results in $OUT (or .)
#   bash benchmarks/gpu.sh --cpu    # the short CPU mode (tests/test_report.py runs it): the same steps,
#                                   # with the current interpreter, one tiny task and short budgets
#
# GPU mode runs iapo from src/ with the machine's python3 (it must hold JAX's CUDA build, Flax and
# Optax). Packages it lacks (Gymnasium, MuJoCo, tyro, tensorboardX, ...) are taken from wheels in
# .whl/ when that folder exists (installed into /tmp/site, nothing fetched); with IAPO_GPU_PIP=1 a
# machine that reaches PyPI installs ".[cuda,test]" into a fresh .venv-gpu instead. The script
# first names every import that fails, and stops there.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=gpu
[ "${1:-}" = "--cpu" ] && MODE=cpu
OUTDIR=${OUT:-.}
mkdir -p "$OUTDIR"
RESULTS="$OUTDIR/gpu-results-$MODE.txt"
PY=python
if [ "$MODE" = gpu ]; then
  if [ "${IAPO_GPU_PIP:-0}" = 1 ]; then
    python3 -m venv .venv-gpu && . .venv-gpu/bin/activate && pip install -q -e ".[cuda,test]" || exit 1
  else
    PY=python3
    if [ -d .whl ]; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site || exit 1
    fi
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  fi
  missing=$($PY -c "
import importlib
names = ['jax', 'flax', 'optax', 'gymnasium', 'mujoco', 'tyro', 'rich', 'tensorboardX', 'matplotlib', 'yaml', 'pytest', 'scipy']
print(' '.join(n for n in names if importlib.util.find_spec(n) is None))")
  if [ -n "$missing" ]; then echo "benchmarks/gpu.sh: missing Python packages: $missing (carry their wheels in .whl/)"; exit 1; fi
  ENVS="Hopper-v5 Humanoid-v5"; PRECISIONS="float32 bfloat16"; REPEATS=20; SECONDS_EACH=20
  TESTS=(tests/test_replay.py tests/test_precision.py tests/test_seeds.py tests/test_resume.py)
  MATCH=("iapo direct" "iapo direct, 5 seeds" "iapo iterative K=5" "iapo iterative K=5, 5 seeds"
         "iapo direct, bfloat16" "iapo direct, 5 seeds, bfloat16" "iapo iterative K=5, bfloat16"
         "iapo iterative K=5, 5 seeds, bfloat16" "iapo direct, device replay")
  COST=""
  MERGED="--env Hopper-v5 Humanoid-v5"
else
  ENVS="Pendulum-v1"; PRECISIONS="float32"; REPEATS=1; SECONDS_EACH=0.2
  TESTS=(tests/test_structure.py)
  MATCH=("iapo direct")
  COST="--batch 8 --action-samples 2"
  MERGED="--env Pendulum-v1 --batch 8 --action-samples 2 --iterations 2 --rounds 1 --repeats 1"
fi
run() { echo "\$ $*"; "$@"; echo "(exit $?)"; }
{
  echo "# benchmarks/gpu.sh, $MODE mode, $(date -u '+%Y-%m-%d %H:%M UTC')"
  run $PY -c "import jax; print('jax', jax.__version__, jax.devices())"
  command -v nvidia-smi > /dev/null && run nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  echo "## tests of the device paths"
  run $PY -m pytest -q -n 0 -p no:cacheprovider "${TESTS[@]}"
  echo "## the update's cost (benchmarks/update_cost.py)"
  for env in $ENVS; do for agent in direct iterative; do for precision in $PRECISIONS; do
    (cd benchmarks && run $PY update_cost.py --env "$env" --agent "$agent" --precision "$precision" --repeats "$REPEATS" $COST)
  done; done; done
  echo "## the optimizer's two runs in one scan (benchmarks/merged_iterations.py)"
  (cd benchmarks && run $PY merged_iterations.py $MERGED)
  echo "## training throughput (benchmarks/throughput.py)"
  for env in $ENVS; do
    run $PY benchmarks/throughput.py --env "$env" --only iapo --rounds 1 --seconds "$SECONDS_EACH" --match "${MATCH[@]}"
  done
} 2>&1 | tee "$RESULTS"
echo "results: $RESULTS"
