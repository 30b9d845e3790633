#!/usr/bin/env bash
# Installs what building and testing grantline needs on Debian or Ubuntu, when missing:
# redis-server and redis-cli (tests and the demo start private instances; the cluster tests form
# a cluster with redis-cli), ss (iproute2: a test reads the listen backlog), pkg-config and the OpenSSL
# headers (TLS for the connectors), Chromium, Node.js and the browser test's npm packages
# (the approval page is tested in headless Chromium). Rust itself is assumed (https://rustup.rs).
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
[ -d /usr/share/zoneinfo ] || need+=(tzdata)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
# the browser test's driver (playwright-core, pinned in tests/browser/package-lock.json; it uses
# the system Chromium and downloads no browser)
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
