#!/usr/bin/env bash
# The test command: installs what is missing, then runs the whole suite. Tests start
# their own redis-server on free ports; nothing touches a shared Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# the whole suite also checks the deployment files (offline once its tools are cached)
if [ "$#" -eq 0 ]; then
  scripts/validate-deploy.sh
fi
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace "$@"
else
  exec cargo test --workspace "$@"
fi
