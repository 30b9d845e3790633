#!/usr/bin/env bash
# The full-path benchmark, every variant BENCHMARKS.md reports: real ingest, worker processes,
# a private Redis and the simulators over HTTP. One JSON object per line on stdout.
#   scripts/bench-pipeline.sh > pipeline.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >&2
cargo build --release --quiet --bin grantline
B=target/release/grantline
run() { local label=$1; shift; echo "== $label: grantline bench pipeline $*" >&2; "$B" bench pipeline "$@" | sed "s/^{/{\"run\":\"$label\",/"; }
run burst-w1 --n 2000 --workers 1
run burst-w2 --n 2000 --workers 2
run paced-420 --n 2000 --workers 1 --rate 420
run throttled-unbatched --n 2000 --workers 2 --throttled --batch false
run throttled-batched --n 2000 --workers 2 --throttled
run throttled-batched-kill2 --n 2000 --workers 2 --throttled --kill 2
run throttled-unbatched-kill2 --n 2000 --workers 2 --throttled --batch false --kill 2
