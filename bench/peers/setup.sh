#!/usr/bin/env bash
# Installs the benchmark peers' dependencies. Idempotent: safe to run again; it only
# reinstalls what changed.
#
#   bench/peers/setup.sh            # node peer (npm ci) + python venv (bench/peers/.venv)
#   bench/peers/setup.sh node       # only the node peer
#   bench/peers/setup.sh python     # only the python venv
#
# Needs node + npm and python3. On Debian, python3's venv module comes in the python3-venv
# package; when it is missing and this runs as root with apt-get, it is installed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WHAT="${1:-all}"
PYTHON="${PYTHON:-python3}"

log() { printf '[peers/setup] %s\n' "$*"; }

setup_node() {
  local dir="$HERE/node-socketio"
  command -v npm >/dev/null || { echo "npm not found: install node and npm first" >&2; exit 1; }
  # npm ci wipes node_modules; skip it when the installed tree already matches the lockfile.
  if [[ -f "$dir/node_modules/.package-lock.json" && \
        "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" && \
        -d "$dir/node_modules/socket.io" ]]; then
    log "node-socketio: node_modules up to date"
  else
    log "node-socketio: npm ci"
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
}

ensure_venv_module() {
  if "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    return
  fi
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    log "python3 venv/ensurepip missing: apt-get install python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  else
    echo "python3's venv module is missing: install python3-venv (Debian/Ubuntu)" >&2
    exit 1
  fi
}

setup_python() {
  local venv="$HERE/.venv"
  local stamp="$venv/.requirements.sha256"
  local want
  want="$(cat "$HERE/flask-socketio/requirements.txt" "$HERE/flask-sse/requirements.txt" | sha256sum | cut -d' ' -f1)"
  if [[ ! -x "$venv/bin/python" ]]; then
    ensure_venv_module
    log "creating $venv"
    "$PYTHON" -m venv "$venv"
  fi
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "python venv: requirements up to date"
    return
  fi
  log "python venv: pip install -r flask-socketio/requirements.txt -r flask-sse/requirements.txt"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$HERE/flask-socketio/requirements.txt" -r "$HERE/flask-sse/requirements.txt"
  "$venv/bin/python" -m pip check
  echo "$want" > "$stamp"
}

case "$WHAT" in
  all) setup_node; setup_python ;;
  node) setup_node ;;
  python) setup_python ;;
  *) echo "usage: $0 [all|node|python]" >&2; exit 2 ;;
esac
log "done"
