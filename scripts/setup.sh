#!/usr/bin/env bash
# Set up nvs_ros on a Debian 12 machine without a ROS install and without a GPU:
# Debian packages (when missing), a venv in .venv with the pinned Python and ROS 2
# Kilted wheels, tf2_msgs built from its message definition, and nvs_ros itself.
# Idempotent: a second run only checks stamps and returns within seconds.
#
# Usage: scripts/setup.sh            (VENV=path to choose the venv, PYTHON=python3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.nvs_ros_setup_stamp"

log() { printf '[setup] %s\n' "$*" >&2; }
pip_install() {
  # The filter drops pip's notes about configured index folders that do not exist.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" \
    2> >(grep -v "^WARNING: Location '.*' is ignored" >&2)
}

install_debian_packages() {
  # libusb-1.0-0: open3d imports it; the rest builds tf2_msgs and pycolmap-free wheels.
  local wanted=(cmake g++ make python3-dev python3-venv libusb-1.0-0 libgomp1)
  local missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

setup_fingerprint() {
  # Any change to the pins, the package metadata or this script re-runs the install.
  cat "$ROOT/requirements.txt" "$ROOT/requirements-build.txt" "$ROOT/setup.py" \
      "$ROOT/setup.cfg" "$ROOT/package.xml" "$ROOT/scripts/setup.sh" \
      "$ROOT/scripts/build_tf2_msgs.sh" | sha256sum | cut -d' ' -f1
}

install_debian_packages

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(setup_fingerprint)" ] && [ -x "$VENV/bin/nvs-ros" ]; then
  log "up to date ($VENV)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || { log "creating venv $VENV"; "$PY" -m venv "$VENV"; }
log "installing pinned Python dependencies (first run: several minutes)"
pip_install -r "$ROOT/requirements.txt" -r "$ROOT/requirements-build.txt"
"$ROOT/scripts/build_tf2_msgs.sh" "$VENV"
log "installing nvs_ros"
pip_install --no-deps -e "$ROOT"
"$VENV/bin/python" -c "import nvs_ros, rclpy, tf2_msgs.msg, cv2, torch, open3d, pycolmap, rosbags, mcap"
setup_fingerprint > "$STAMP"
log "done: activate with 'source $VENV/bin/activate'"
