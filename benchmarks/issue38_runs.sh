#!/usr/bin/env bash
# Issue 38's background runs on the DeepMind Control Suite, one after another; re-running continues
# them (each sweep skips finished trials and resumes an unfinished one from its checkpoints). Run it
# from a git worktree pinned to one commit (this script's, or later), with its own venv holding the
# dmc extra, after issue 35's queue (one long run at a time on these two cores):
#   git worktree add --detach ../evidence-dmc <commit> && cd ../evidence-dmc
#   python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dmc]"
#   nohup bash -c 'while pgrep -f "[i]ssue35_runs.sh" > /dev/null; do sleep 60; done; \
#       bash <main checkout>/benchmarks/issue38_runs.sh' >> logs/dmc.log 2>&1 &
# (the [i] keeps pgrep from finding the waiting shell itself, whose command line names the script)
# and copy every seed's records into the main checkout as they come:
#   bash <main checkout>/benchmarks/issue38_runs.sh --sync <main checkout>
set -u
if [ "${1:-}" = "--sync" ]; then
  dst=$2/docs/results/dmc-runs
  [ -d runs/dmc ] || exit 0
  (cd runs/dmc && find . -name metrics.csv -o -name config.json) | while read -r f; do
    mkdir -p "$dst/$(dirname "$f")"; cp "runs/dmc/$f" "$dst/$f"
  done
  exit 0
fi
. .venv/bin/activate
mkdir -p logs
while pgrep -f "iapo sweep" > /dev/null; do sleep 30; done
E="eval-every=5000 eval-episodes=10 checkpoint-every=5000 matmul-precision=float32"
C="--seeds 0-2 --cpus-per-trial 2 --no-progress"
# 1. cartpole-balance (ceiling 1000), the direct agent, 50 000 steps
iapo sweep --config configs/direct.yaml --envs dm_control/cartpole-balance-v0 $C --total-steps 50000 \
  --set $E snapshot-every=25000 --out runs/dmc/cartpole-direct || exit 1
# 2. cheetah-run, the direct agent, 100 000 steps (published SAC: 310 +- 65 at 100 000, TD-MPC2's results)
iapo sweep --config configs/direct.yaml --envs dm_control/cheetah-run-v0 $C --total-steps 100000 \
  --set $E snapshot-every=25000 --out runs/dmc/cheetah || exit 1
# 3. cheetah-run as TD-MPC2 runs dm_control (its envs/dmcontrol.py: each action held for 2 steps),
#    100 000 actions = 200 000 environment steps, evaluated every 5 000 environment steps: TD-MPC2's
#    trainer counts a step per action, so its "100 000 steps" are 50 000 or 100 000 actions depending
#    on whether its SAC files count environment steps or actions, and both are on this curve. It needs
#    --action-repeat (2d7816a): the iapo of a second worktree, $AR (../evidence-dmc2 by default):
#      git worktree add --detach ../evidence-dmc2 2d7816a && (cd ../evidence-dmc2 && python3 -m venv .venv \
#        && .venv/bin/pip install -e ".[dmc]")
AR=${AR:-../evidence-dmc2}
"$AR/.venv/bin/iapo" sweep --config "$AR/configs/direct.yaml" --envs dm_control/cheetah-run-v0 $C --total-steps 100000 \
  --set action-repeat=2 eval-every=2500 eval-episodes=10 checkpoint-every=2500 matmul-precision=float32 \
  snapshot-every=25000 --out runs/dmc/cheetah-ar2 || exit 1
# 4. cartpole-balance, the iterative agent, 50 000 steps
iapo sweep --config configs/iterative.yaml --envs dm_control/cartpole-balance-v0 $C --total-steps 50000 \
  --set $E snapshot-every=25000 --out runs/dmc/cartpole-iterative || exit 1
