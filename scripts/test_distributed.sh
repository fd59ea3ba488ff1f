#!/usr/bin/env bash
# Multi-process tests (marker `distributed`): 2-process GRPO under torchrun with gloo on CPU — DDP, DeepSpeed
# ZeRO-2 and ZeRO-3 against one process, ZeRO-3 resume, and REASONER_CLEAN_EXIT_RUNS (default 10) tiny runs that
# must all exit with rc 0.
#
#   VENV=.venv scripts/test_distributed.sh [pytest args]
#
# Installs deepspeed into $VENV when missing (pure-Python build, DS_BUILD_OPS=0; its gloo communication op is
# compiled on first use, ~35 s, cached in ~/.cache/torch_extensions; needs g++).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
DEEPSPEED_VERSION=${DEEPSPEED_VERSION:-0.19.8}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[test-distributed] error: no venv at $VENV (create it with scripts/setup_env.sh, or set VENV)" >&2
  exit 2
fi
if ! "$VENV/bin/python" -c "import deepspeed" >/dev/null 2>&1; then
  echo "[test-distributed] installing deepspeed==$DEEPSPEED_VERSION into $VENV"
  constraint_args=()
  if [ -f "$VENV/cpu-constraints.txt" ]; then constraint_args=(-c "$VENV/cpu-constraints.txt"); fi
  DS_BUILD_OPS=0 "$VENV/bin/python" -m pip install -q "${constraint_args[@]}" "deepspeed==$DEEPSPEED_VERSION"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "== distributed tests ($VENV)"
"$VENV/bin/python" -m pytest -q -m distributed tests/scaleout "$@"
