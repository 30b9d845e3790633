#!/usr/bin/env bash
# The test command: installs what is missing, then runs the whole suite. Tests start
# their own redis-server on free ports; nothing touches a shared Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace "$@"
else
  exec cargo test --workspace "$@"
fi
