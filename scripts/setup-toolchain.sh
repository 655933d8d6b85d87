#!/usr/bin/env bash
# Installs what building and testing op25b needs on a fresh Debian 12 machine.
# Idempotent: every step checks first and does nothing when already satisfied.
set -euo pipefail

BPF_LINKER_VERSION=0.13.0
APT_PACKAGES=(
  rustc-web cargo-web libstd-rust-web-dev-bpf llvm-22-dev # eBPF toolchain
  bpftool iproute2 procps tcpdump util-linux python3       # lab and tests
  pkg-config zlib1g-dev                                    # bpf-linker build
  python3-scapy                                            # an independent capture writer
  prometheus                                               # a real scraper, promtool
  freeradius-utils                                         # radclient: a real RADIUS client for tests
  systemd man-db dpkg-dev                                  # unit checks, man pages, packaging
  xdp-tools nftables ethtool                               # benchmark peers
  etcd-server protobuf-compiler libprotobuf-dev            # fleet: a real etcd in tests; protoc + well-known protos for etcd-client
)

log() { printf 'setup: %s\n' "$*" >&2; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# bpf-linker must be linked against LLVM 22, the LLVM of Debian's rustc-web;
# without LLVM_PREFIX its build picks /usr/bin/llvm-config (LLVM 14).
linker_ok() {
  local bin
  bin=$(command -v bpf-linker 2>/dev/null) || return 1
  "$bin" --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION" || return 1
  ldd "$bin" | grep -q 'libLLVM.so.22'
}
export PATH="$HOME/.cargo/bin:$PATH"
if ! linker_ok; then
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM 22"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install --locked --force bpf-linker \
    --version "$BPF_LINKER_VERSION" --no-default-features --features llvm-22
fi

# aya-build compiles the eBPF crate with this linked toolchain.
if ! rustup toolchain list | grep -q '^debian'; then
  log "linking Debian's rustc as rustup toolchain 'debian'"
  rustup toolchain link debian /usr
fi

if ! mountpoint -q /sys/fs/bpf; then
  log "mounting bpffs on /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
log "toolchain ready"
