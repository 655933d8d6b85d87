#!/usr/bin/env bash
# Runs op25b's benchmarks (release build) and prints the markdown table;
# JSON goes to target/op25b-bench.json. Extra arguments go to op25b-bench
# (--smoke, --repeat N, --runs N, --json FILE). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-toolchain.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The report section runs the agent binary as a child.
cargo build --locked --release -p op25b-bench -p op25b-agent --bins
exec ./target/release/op25b-bench "$@"
