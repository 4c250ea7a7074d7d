#!/usr/bin/env bash
# Run syn's whole test suite on a fresh Debian machine: installs what the tests need, then
# runs `cargo test`. Interop tests install the real Python Synapse into target/peers/ on first
# use and skip, saying why, where that cannot work.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: syn needs Rust 1.88 or newer (rustup's stable toolchain)" >&2
    exit 1
fi

cargo test --locked "$@"

# The Debian package: build, install, check, verify the units, purge (root and dpkg only).
packaging/test-deb.sh
