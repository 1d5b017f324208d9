#!/usr/bin/env bash
# Set up (idempotent) and run the reconstruction demo on the bundled scene.
# Extra arguments go to `nvs-ros demo` (see `nvs-ros demo --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
source "$ROOT/scripts/ros_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/nvs-ros" demo "$@"
