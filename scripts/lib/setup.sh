# shellcheck shell=bash
# Install what npyfs's scripts need, only when it is missing.
# Sourced by scripts/test and scripts/demo (which set -euo pipefail).
#
#   npyfs_setup     fuse3 (fusermount3), cargo on PATH, .venv with numpy>=2 and pytest
#   npyfs_build     cargo build --release; exports NPYFS_BIN

NPYFS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NPYFS_VENV="$NPYFS_ROOT/.venv"
NPYFS_PY="$NPYFS_VENV/bin/python"
export NPYFS_BIN="$NPYFS_ROOT/target/release/npyfs"

npyfs_log() { printf '==> %s\n' "$*" >&2; }

npyfs_as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    npyfs_log "need root for: $*"
    return 1
  fi
}

npyfs_apt_updated=0
npyfs_apt_install() {
  if [ "$npyfs_apt_updated" -eq 0 ]; then
    npyfs_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    npyfs_apt_updated=1
  fi
  npyfs_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

npyfs_ensure_fuse() {
  if ! command -v fusermount3 >/dev/null 2>&1; then
    npyfs_log "installing fuse3 (fusermount3 is missing)"
    npyfs_apt_install fuse3
  fi
  if [ ! -e /dev/fuse ]; then
    npyfs_log "warning: /dev/fuse does not exist; mounting will fail"
  fi
}

npyfs_ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  command -v cargo >/dev/null 2>&1 || { npyfs_log "cargo not found"; return 1; }
}

npyfs_venv_ok() {
  [ -x "$NPYFS_PY" ] && "$NPYFS_PY" - <<'PY' >/dev/null 2>&1
import numpy, pytest, dask.distributed
assert int(numpy.__version__.split(".")[0]) >= 2
PY
}

npyfs_ensure_venv() {
  npyfs_venv_ok && return 0
  if [ ! -x "$NPYFS_PY" ]; then
    npyfs_log "creating $NPYFS_VENV"
    if ! python3 -m venv "$NPYFS_VENV"; then
      npyfs_apt_install python3-venv
      rm -rf "$NPYFS_VENV"
      python3 -m venv "$NPYFS_VENV"
    fi
  fi
  npyfs_log "installing numpy, pytest and dask[distributed] into $NPYFS_VENV"
  "$NPYFS_PY" -m pip install -q --disable-pip-version-check 'numpy>=2' pytest 'dask[distributed]'
  npyfs_venv_ok || { npyfs_log "the venv still lacks numpy>=2, pytest or dask.distributed"; return 1; }
}

npyfs_setup() {
  npyfs_ensure_fuse
  npyfs_ensure_cargo
  npyfs_ensure_venv
}

npyfs_build() {
  npyfs_log "cargo build --release"
  (cd "$NPYFS_ROOT" && cargo build --release)
  [ -x "$NPYFS_BIN" ] || { npyfs_log "no binary at $NPYFS_BIN"; return 1; }
}
