#!/usr/bin/env bash
# The demo: simulators with a seeded tenant, all roles, sample tickets, a live timeline.
# Uses REDIS_URL when set; otherwise starts a private redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --quiet -- demo "$@"
