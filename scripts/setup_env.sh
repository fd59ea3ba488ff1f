#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment.
#
#   VENV=.venv EXTRAS=dev scripts/setup_env.sh
#
# On a machine without an NVIDIA GPU torch is pinned to its CPU build with a pip constraint: a bare
# `torch` requirement otherwise resolves to the CUDA build and pulls several GB of nvidia-* packages.
# Re-running is cheap: the install is skipped while pyproject.toml and the extras are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev}
PYTHON=${PYTHON:-python3}
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

if has_gpu; then
  constraint_args=()
else
  echo "torch==${TORCH_CPU_VERSION}+cpu" > "$VENV/cpu-constraints.txt"
  constraint_args=(-c "$VENV/cpu-constraints.txt")
fi

stamp="$VENV/.reasoner-installed"
want="$(cat pyproject.toml "$0" | sha256sum | cut -c1-16) extras=$EXTRAS gpu=$(has_gpu && echo 1 || echo 0)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

pip_install() { "$VENV/bin/python" -m pip install -q "${constraint_args[@]}" "$@"; }

# The distribution was called `reasoner` before 0.2 (a name taken on PyPI): an old editable install would keep
# mapping the renamed packages to paths that no longer exist.
if "$VENV/bin/python" -m pip show reasoner >/dev/null 2>&1; then
  "$VENV/bin/python" -m pip uninstall -q -y reasoner
fi
echo "[setup] installing reasoner-rl[$EXTRAS] into $VENV"
if ! pip_install -e ".[$EXTRAS]"; then
  if ! has_gpu; then
    # The CPU wheel is not on PyPI for Linux; fall back to PyTorch's CPU index.
    echo "[setup] retrying with the PyTorch CPU index"
    pip_install --extra-index-url https://download.pytorch.org/whl/cpu -e ".[$EXTRAS]"
  else
    exit 1
  fi
fi
if ! has_gpu && "$VENV/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
  echo "[setup] error: CUDA packages were installed on a CPU-only machine" >&2
  exit 1
fi
echo "$want" > "$stamp"
