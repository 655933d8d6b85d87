#!/usr/bin/env bash
# The soak (not part of CI): one agent in the netns lab for SECONDS (default
# 3600) under a SYN flood from 500 sources, with a reload, an API grant and
# revoke, 40 slow or lying HTTP clients and three probe connections every
# few seconds. RSS, descriptors and threads are sampled every minute; the
# table goes to target/soak.md. Fails on any wrong verdict or growth.
#
#   scripts/soak.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-toolchain.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --locked --release --bins
OP25B_AGENT_BIN="$PWD/target/release/op25b-agent" OP25B_SOAK_SECONDS="${1:-3600}" \
  cargo test --locked --release -p op25b-tests --test soak -- --ignored --nocapture
