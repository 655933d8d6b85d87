#!/usr/bin/env bash
# Fuzzes every parser op25b takes outside input with (cargo-fuzz, libFuzzer,
# AddressSanitizer): frames and the verdict, config and list files, API
# bodies and queries, pcap/pcapng captures, events file lines (report).
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]   SECONDS per target (default 60)
#
# New interesting inputs go to target/fuzz-corpus/TARGET; the committed
# seeds in fuzz/corpus/TARGET are read, not written. A crash stops the run
# with its input in fuzz/artifacts/TARGET: fix it, then add the input to
# fuzz/corpus/TARGET so tests/tests/fuzz_corpus.rs replays it forever.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
./scripts/setup-toolchain.sh
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
  cargo install --locked cargo-fuzz
fi
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_verdict config_file list_file api_request capture radius_packet event_lines)
for target in "${targets[@]}"; do
  mkdir -p "target/fuzz-corpus/$target"
  echo "== $target: ${seconds}s"
  status=0
  cargo +nightly fuzz run --fuzz-dir fuzz "$target" \
    "target/fuzz-corpus/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    >"target/fuzz-$target.log" 2>&1 || status=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|SUMMARY)' "target/fuzz-$target.log" || true
  if [ "$status" -ne 0 ]; then
    echo "$target: failed (exit $status): see target/fuzz-$target.log and fuzz/artifacts/$target" >&2
    exit 1
  fi
done
