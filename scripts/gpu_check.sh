#!/usr/bin/env bash
# The GPU check (see scripts/gpu_check.py): run with the machine's own python3 (no venv, no network), from any
# folder. Writes gpu_check.json (or --out PATH) and prints one line per step.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python3 scripts/gpu_check.py "$@"
