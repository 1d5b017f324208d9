#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. Extra arguments go to pytest,
# e.g. scripts/test.sh -m "not slow" or scripts/test.sh test/core.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
source "$ROOT/scripts/ros_env.sh"
cd "$ROOT"
# Two workers (pytest-xdist), one a core: a test file stays in one worker (its module fixtures,
# trained scenes among them, are made once); each worker has its own ROS domain (test/conftest.py).
exec "$ROOT/.venv/bin/python" -m pytest -ra --durations=15 -n 2 --dist loadfile "$@"
