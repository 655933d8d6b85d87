#!/usr/bin/env bash
# Builds the Debian package: target/debian/op25b_<version>_<arch>.deb
#
#   scripts/build-deb.sh            release build (what an edge box gets)
#   PROFILE=dev scripts/build-deb.sh  debug build, faster (tests)
#
# Contents: /usr/bin/op25b-agent, the systemd unit, /etc/op25b/ (conffiles:
# op25b.toml and lists), man pages, bash and zsh completions, logrotate,
# and the Prometheus/Grafana examples under /usr/share/doc/op25b.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PROFILE=${PROFILE:-release}
./scripts/setup-toolchain.sh
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --locked --profile "$PROFILE" --bin op25b-agent
bin_dir=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
version=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print([p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="op25b-agent"][0])')
arch=$(dpkg --print-architecture)
stage=target/debian/stage
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"

install -Dm755 "$bin_dir/op25b-agent" "$stage/usr/bin/op25b-agent"
install -Dm644 deploy/systemd/op25b-agent.service "$stage/lib/systemd/system/op25b-agent.service"
install -Dm644 deploy/op25b.toml "$stage/etc/op25b/op25b.toml"
for list in deploy/lists/*.txt; do install -Dm644 "$list" "$stage/etc/op25b/lists/$(basename "$list")"; done
install -Dm644 deploy/logrotate/op25b "$stage/etc/logrotate.d/op25b"
"$bin_dir/op25b-agent" man "$stage/usr/share/man/man1"
gzip -9n "$stage"/usr/share/man/man1/*.1
install -d "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions"
"$bin_dir/op25b-agent" completions bash > "$stage/usr/share/bash-completion/completions/op25b-agent"
"$bin_dir/op25b-agent" completions zsh > "$stage/usr/share/zsh/vendor-completions/_op25b-agent"
install -Dm644 README.md "$stage/usr/share/doc/op25b/README.md"
for f in deploy/prometheus/* deploy/grafana/*; do install -Dm644 "$f" "$stage/usr/share/doc/op25b/examples/${f#deploy/}"; done

sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" deploy/debian/control.in > "$stage/DEBIAN/control"
(cd "$stage" && find etc -type f | sed 's#^#/#' | sort) > "$stage/DEBIAN/conffiles"
install -m755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$stage/DEBIAN/"
out="target/debian/op25b_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
