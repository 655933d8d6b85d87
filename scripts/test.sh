#!/usr/bin/env bash
# Runs every op25b test on this machine: installs what is missing first
# (idempotent), then builds and tests. Kernel and network-namespace tests
# need root.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-toolchain.sh
export PATH="$HOME/.cargo/bin:$PATH"

# The replay and end-to-end tests drive the real binary.
cargo build --locked --bins
cargo test --locked
