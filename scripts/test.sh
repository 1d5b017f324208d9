#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. Extra arguments go to pytest,
# e.g. scripts/test.sh -m "not slow" or scripts/test.sh test/core.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
source "$ROOT/scripts/ros_env.sh"
cd "$ROOT"
# Two workers (pytest-xdist), one a core: a test file, and the files sharing the trained ring
# scene, stay in one worker (test/conftest.py groups them); each worker has its own ROS domain.
exec "$ROOT/.venv/bin/python" -m pytest -ra --durations=15 -n 2 --dist loadgroup "$@"
