#!/usr/bin/env bash
# Build the Debian package: target/debian/syn-appliance_<version>_<arch>.deb
# Needs cargo-deb (installed here on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked --version 3.8.0
cargo build --release --locked
rm -rf target/package-docs
target/release/syn gen-docs target/package-docs
gzip -9n target/package-docs/*.1
cargo deb --no-build --locked "$@"
