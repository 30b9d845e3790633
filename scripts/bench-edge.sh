#!/usr/bin/env bash
# The edge under idle and slow clients, every variant BENCHMARKS.md reports: `grantline ingest`
# as a child process against a private Redis, attacked over loopback. A table per run on
# standard error, one JSON object per line on stdout.
#   scripts/bench-edge.sh > edge.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >&2
cargo build --release --quiet --bin grantline
B=target/release/grantline
run() { local label=$1; shift; echo "== $label: grantline bench edge $*" >&2; "$B" bench edge "$@" | sed "s/^{/{\"run\":\"$label\",/"; }
# the configuration's limits: 20,000 idle connections, 3,000 stalled 64 KiB bodies, 3,000 bad secrets
run defaults
# the cap raised above the attack, so that every stalled body is held until the body timeout
run cap-4096 --idle 0 --max-connections 4096
