#!/usr/bin/env bash
# The queue benchmark, every variant BENCHMARKS.md reports, against private loopback Redis
# instances (started and stopped by queue-bench itself). One JSON object per line on stdout.
#   scripts/bench-queue.sh > bench.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >&2
cargo build --release --quiet -p grantline-queue --bin queue-bench
B=target/release/queue-bench
run() { local label=$1; shift; echo "== $label: queue-bench $*" >&2; "$B" "$@" | sed "s/^{/{\"run\":\"$label\",/"; }
run burst-w1-c50 chains --n 20000 --workers 1 --concurrency 50 --warmup --reps 3
run burst-w2-c50 chains --n 20000 --workers 2 --concurrency 50 --reps 2
run burst-w4-c50 chains --n 20000 --workers 4 --concurrency 50
run paced-300 chains --n 12000 --rate 300
run paced-600 chains --n 24000 --rate 600
run paced-1200 chains --n 36000 --rate 1200
run aof-everysec chains --n 20000 --persistence everysec
run aof-always chains --n 20000 --persistence always
run kill-at-1500ms chains --n 20000 --kill-after-ms 1500
run delayed-1M delayed --m 1000000 --k 10000 --waiting 100000 --chains 20000
