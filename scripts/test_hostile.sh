#!/usr/bin/env bash
# The sandbox's hostile-program corpus (pytest marker `hostile`), run twice: as root and as an unprivileged
# user, each time inside its own pid, network and mount namespace (`unshare --pid --net --mount --fork
# --mount-proc`), so that a sandbox bug cannot kill the test runner or touch the host.
#
#   VENV=.venv scripts/test_hostile.sh [extra pytest args]
#
# As root it installs bubblewrap (and acl, to let the test user reach the interpreter) with apt-get when
# they are missing, creates the user $HOSTILE_USER (default sbx-hostile) if needed, and grants it read
# access to the worktree, the venv, the interpreter and the shared data ($REASONER_SHARED_DATA). Without root only the unprivileged pass runs, in a user namespace.
# SANDBOX_HOSTILE_WEAKEN=1 runs the corpus against a deliberately weak sandbox (tests are expected to fail).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
PY="$VENV/bin/python"
HOSTILE_USER=${HOSTILE_USER:-sbx-hostile}
SHARED=${REASONER_SHARED_DATA:-$(cd "$REPO/.." && pwd)/shared/data}     # as tests/conftest.py finds it
export REASONER_SHARED_DATA="$SHARED"
PYTEST_ARGS=(-m hostile -p no:cacheprovider -q tests/sandbox "$@")
warn() { echo "[test_hostile] warning: $*" >&2; }
say() { echo "[test_hostile] $*"; }

[ -x "$PY" ] || { echo "[test_hostile] no python at $PY (set VENV)" >&2; exit 2; }
command -v unshare >/dev/null || { echo "[test_hostile] util-linux unshare is required" >&2; exit 2; }

apt_install() {   # apt_install PACKAGE...: only as root, only when apt-get exists
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; } ||
      warn "could not install $*"
  fi
}

if ! command -v bwrap >/dev/null; then
  apt_install bubblewrap
  command -v bwrap >/dev/null || warn "bubblewrap missing: the sandbox falls back to weaker isolation (see its warnings)"
fi

# Inside the new network namespace loopback starts down; bring it up so the loopback-listener test has a
# listener the runner itself can reach (the sandbox's own namespace is separate either way).
LO_UP='import fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH14s", b"lo", 0, b""))[:18])[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", flags | 1, b""))
except OSError as exc:
    print("[test_hostile] warning: cannot bring loopback up:", exc)
# A private /tmp, /var/tmp and /dev/shm for the runner: nothing a test (or a weakened sandbox) writes there
# reaches the host (needs root in this namespace). A checkout or venv that lives in one of them (a CI clone
# in `mktemp -d`) is bound back into the new tmpfs, through a descriptor kept across the mount.
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
needed = [os.getcwd(), sys.prefix, sys.executable, os.path.realpath(sys.executable)] + sys.argv[1:2]
for d in ("/tmp", "/var/tmp", "/dev/shm"):
    inside = [p for p in needed if p.startswith(d + "/")]
    tops = sorted({d + "/" + p[len(d) + 1:].split("/")[0] for p in inside})
    keep = {t: os.open(t, os.O_PATH) for t in tops}
    if d in needed or os.geteuid() != 0 or libc.mount(b"tmpfs", d.encode(), b"tmpfs", 6, b"mode=1777,size=4g") != 0:
        print("[test_hostile] warning: the runner shares the host directory", d)
        continue
    for top, fd in keep.items():
        os.mkdir(top, 0o755)
        if libc.mount(f"/proc/self/fd/{fd}".encode(), top.encode(), None, 4096 | 16384, None) != 0:
            sys.exit(f"[test_hostile] cannot bind {top} back into the private {d}")'

ENVS=(SANDBOX_HOSTILE_OK=1 PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1
      "SANDBOX_HOSTILE_WEAKEN=${SANDBOX_HOSTILE_WEAKEN:-0}" "PATH=/usr/local/bin:/usr/bin:/bin")

status=0
if [ "$(id -u)" -eq 0 ]; then
  say "pass 1/2: as root, in new pid + net + mount namespaces"
  unshare --pid --net --mount --fork --mount-proc -- \
    env "${ENVS[@]}" HOME=/root "$PY" -c "$LO_UP"'
import os, sys
os.execv(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[2:]])' "$SHARED" "${PYTEST_ARGS[@]}" || status=1

  id -u "$HOSTILE_USER" >/dev/null 2>&1 ||
    useradd --system --no-create-home --shell /usr/sbin/nologin "$HOSTILE_USER"
  can() { runuser -u "$HOSTILE_USER" -- test "$@"; }
  grant() {   # grant PATH: let the test user traverse to PATH and read it
    local p="$1" dir="" part
    IFS=/ read -ra parts <<< "${p#/}"
    for part in "${parts[@]}"; do
      dir="$dir/$part"
      [ -d "$dir" ] || break
      if ! can -x "$dir"; then
        command -v setfacl >/dev/null || apt_install acl
        if command -v setfacl >/dev/null; then setfacl -m "u:$HOSTILE_USER:x" "$dir"
        else warn "granting o+x on $dir (no setfacl)"; chmod o+x "$dir"; fi
      fi
    done
    if ! can -r "$p"; then
      if command -v setfacl >/dev/null; then setfacl -R -m "u:$HOSTILE_USER:rX" "$p"
      else warn "granting o+rX on $p (no setfacl)"; chmod -R o+rX "$p"; fi
    fi
  }
  real_py=$(readlink -f "$PY")
  for p in "$REPO" "$VENV" "$real_py" "$("$PY" -c 'import sys; print(sys.base_prefix)')"; do grant "$p"; done
  [ -d "$SHARED" ] && grant "$SHARED"          # the dataset tests read it as that user too

  say "pass 2/2: as $HOSTILE_USER, in new pid + net + mount namespaces"
  unshare --pid --net --mount --fork --mount-proc -- \
    "$PY" -c "$LO_UP"'
import os, sys
os.execvp("runuser", ["runuser", "-u", sys.argv[2], "--", "env", *sys.argv[3:]])' \
    "$SHARED" "$HOSTILE_USER" "${ENVS[@]}" HOME=/tmp "$PY" -m pytest "${PYTEST_ARGS[@]}" || status=1
else
  warn "not root: skipping the root pass; the unprivileged pass runs in a user namespace"
  say "pass 1/1: as $(id -un), in new user + pid + net + mount namespaces"
  unshare --user --map-current-user --pid --net --mount --fork --mount-proc -- \
    env "${ENVS[@]}" HOME="${HOME:-/tmp}" "$PY" -c "$LO_UP"'
import os, sys
os.execv(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[2:]])' "$SHARED" "${PYTEST_ARGS[@]}" || status=1
fi
exit $status
