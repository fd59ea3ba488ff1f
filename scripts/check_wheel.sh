#!/usr/bin/env bash
# The built wheel installs beside PyPI's `verifiers` package (an RL environments library whose import name our
# graders used to shadow) and both import: ours as `reasoner_verifiers`, theirs as `verifiers`.
#   scripts/check_wheel.sh            # ~1-2 min; needs the Python package index
# A fresh venv gets the wheel (no deps) and PyPI's verifiers (with its deps); the heavy dependencies both share
# (torch, transformers, ...) are read from the project's venv through a .pth entry instead of downloaded again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$VENV/bin/python" -m pip wheel -q --no-deps --no-build-isolation . -w "$work/dist"
wheel=$(ls "$work"/dist/reasoner_rl-*.whl)
echo "[wheel] built $(basename "$wheel")"
"$VENV/bin/python" -m venv "$work/venv"
shared=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
fresh=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$shared" > "$fresh/shared-deps.pth"  # appended after the venv's own site-packages: its copies win
"$work/venv/bin/python" -m pip install -q --no-deps "$wheel"
"$work/venv/bin/python" -m pip install -q verifiers
cd "$work"  # not the checkout: imports must come from the installed wheel
"$work/venv/bin/python" - "$fresh" <<'EOF'
import sys
from pathlib import Path

site = Path(sys.argv[1]).resolve()
import reasoner
import reasoner_verifiers
import sandbox
import verifiers  # PyPI's
from importlib.metadata import distribution

for module in (reasoner, reasoner_verifiers, sandbox, verifiers):
    path = Path(module.__file__).resolve()
    assert path.is_relative_to(site), f"{module.__name__} imported from {path}, not the fresh venv"
assert not Path(verifiers.__file__).resolve().is_relative_to(Path(reasoner_verifiers.__file__).resolve().parent)
with reasoner_verifiers.get_verifier("math") as math:
    score = math.score("<answer>42</answer>", {"answer": "42"})
assert score.value == 1.0, score
print(f"[wheel] reasoner {reasoner.__version__}, reasoner_verifiers and PyPI verifiers "
      f"{distribution('verifiers').version} import side by side; math verifier scores 42 == 42")
EOF
"$work/venv/bin/reasoner" --help > /dev/null && echo "[wheel] the reasoner command runs"
