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
  openssl                                                  # fleet TLS test: makes its CA and certificates
  time                                                     # peak RSS of a child (report benchmark)
  python3-jsonschema python3-pip                           # X-ARF reports against the published schemas
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

# The official X-ARF v4 JSON schemas, as PyPI's `xarf` package ships them
# (its schemas/ only: the tests validate with Debian's python3-jsonschema).
# Debian's python3 and pip explicitly: a python3 earlier in PATH (pyenv) may lack pip.
XARF_PY_VERSION=1.0.0
XARF_SCHEMAS=/usr/local/share/op25b/xarf-$XARF_PY_VERSION/schemas
if [ ! -f "$XARF_SCHEMAS/xarf-v4-master.json" ]; then
  log "fetching the X-ARF v4 schemas (PyPI xarf $XARF_PY_VERSION)"
  wheels=$(mktemp -d)
  /usr/bin/python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" "xarf==$XARF_PY_VERSION"
  mkdir -p "$XARF_SCHEMAS"
  /usr/bin/python3 - "$wheels"/xarf-"$XARF_PY_VERSION"-*.whl "$XARF_SCHEMAS" <<'PY'
import sys, zipfile, pathlib
wheel, target = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("xarf/schemas/") and not name.endswith("/"):
            out = target / name[len("xarf/schemas/"):]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(z.read(name))
PY
  rm -rf "$wheels"
fi

if ! mountpoint -q /sys/fs/bpf; then
  log "mounting bpffs on /sys/fs/bpf"
  mount -t bpf bpf /sys/fs/bpf
fi
log "toolchain ready"
