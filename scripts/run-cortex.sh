#!/usr/bin/env bash
# Build syn and run a cortex on a local directory with the embedded default configuration.
# Usage: scripts/run-cortex.sh [DIR] [extra syn options...]   (DIR defaults to ./syn-data/cortex)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq gcc >/dev/null; }
dir=${1:-./syn-data/cortex}
shift || true
cargo build --release --locked
exec target/release/syn cortex "$dir" --telepath tcp://127.0.0.1:27492 "$@"
