#!/usr/bin/env bash
# The sandbox's tests from checkouts in the places users and CI runners put them, each with its own venv:
#   tmp   a `mktemp -d` directory under /tmp (bubblewrap mounts a private /tmp over it: issue 15 item 2)
#   home  a directory whose parent is mode 0700, as a home directory is (outside /tmp)
# Each place gets a clone of this checkout's HEAD (commit first: uncommitted changes are not tested), a
# fresh venv with pytest only (the sandbox is standard library), then: `python -m sandbox layers` must
# report bwrap isolation, the sandbox's main suite, and the hostile corpus under bwrap (scripts/test_hostile.sh
# -k bwrap: as root and as an unprivileged user; without root, the unprivileged pass only).
#
#   scripts/test_anywhere.sh [tmp] [home]        # default: both
#
# REASONER_SHARED_DATA (default: ../shared/data next to this checkout) is passed on, so the dataset tests
# run in the clones too. The clones are removed afterwards (KEEP=1 keeps them).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
PLACES=("$@")
[ ${#PLACES[@]} -gt 0 ] || PLACES=(tmp home)
SHARED=${REASONER_SHARED_DATA:-$(cd .. && pwd)/shared/data}
PYTHON=${PYTHON:-python3}
say() { echo "[test_anywhere] $*"; }

make_place() {   # make_place NAME: print the directory the clone goes into
  case "$1" in
    tmp) mktemp -d /tmp/reasoner-ci.XXXXXX ;;
    home) local top
          top=$(mktemp -d /var/tmp/reasoner-home.XXXXXX)      # mode 0700, like /home/user or /root
          mkdir "$top/user" && chmod 0700 "$top/user" && echo "$top/user" ;;
    *) echo "[test_anywhere] unknown place $1 (tmp, home)" >&2; return 2 ;;
  esac
}

status=0
for place in "${PLACES[@]}"; do
  dir=$(make_place "$place")
  top=$dir; [ "$place" = home ] && top=$(dirname "$dir")
  ck="$dir/reasoner"
  say "== $place: $ck"
  git clone -q --no-hardlinks "$SRC" "$ck"
  "$PYTHON" -m venv "$ck/.venv"
  "$ck/.venv/bin/python" -m pip install -q pytest >/dev/null
  (
    cd "$ck"
    export REASONER_SHARED_DATA="$SHARED" HF_HUB_OFFLINE=1
    layers=$(.venv/bin/python -m sandbox layers)
    grep -q '"isolation": "bwrap"' <<< "$layers" ||
      { echo "[test_anywhere] $place: the sandbox did not start under bwrap: $layers"; exit 1; }
    .venv/bin/python -m pytest -q -p no:cacheprovider tests/sandbox -m "not hostile"
    VENV=.venv scripts/test_hostile.sh -k bwrap
  ) || { status=1; say "$place: FAILED"; }
  if [ "${KEEP:-0}" = 1 ]; then say "kept $top"; else rm -rf "$top"; fi
done
exit $status
