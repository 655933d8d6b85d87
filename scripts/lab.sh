#!/usr/bin/env bash
# The op25b lab: a subscriber network, an edge router running op25b on its
# subscriber-facing interface, and an "internet" with mail servers, all in
# network namespaces on this machine.
#
#   scripts/lab.sh            install what is missing, build, run the demo, tear down
#   scripts/lab.sh up NAME    create lab NAME (namespaces NAMEs, NAMEr, NAMEi) and its listeners
#   scripts/lab.sh down NAME  remove lab NAME
#
# Addresses (documentation ranges only):
#   subscriber NAMEs0: dynamic 100.64.1.2 / 2001:db8:1000::2, exempt 100.64.1.7 / 2001:db8:1000::7,
#                      static 203.0.113.10 / 2001:db8:2000::10
#   router NAMEr0 (subscriber side, op25b attached) | NAMEr1 (uplink)
#   internet NAMEi0:   outside MX 198.51.100.25 / 2001:db8:5100::25, ISP relay 192.0.2.25 / 2001:db8:25::25,
#                      each listening on 25, 587 and 465
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"

up() {
  local n=$1 s="${1}s" r="${1}r" i="${1}i"
  [ ${#n} -le 10 ] || { echo "lab name $n too long (max 10)" >&2; exit 2; }
  ip netns add "$s"; ip netns add "$r"; ip netns add "$i"
  ip link add "${n}s0" netns "$s" type veth peer name "${n}r0" netns "$r"
  ip link add "${n}r1" netns "$r" type veth peer name "${n}i0" netns "$i"
  for ns in "$s" "$r" "$i"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip -n "$ns" link set lo up
  done
  ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

  ip -n "$s" link set "${n}s0" up
  for a in 100.64.1.2/24 100.64.1.7/24 203.0.113.10/24; do ip -n "$s" addr add "$a" dev "${n}s0"; done
  for a in 2001:db8:1000::2/64 2001:db8:1000::7/64 2001:db8:2000::10/64; do ip -n "$s" addr add "$a" dev "${n}s0" nodad; done
  # veth hands XDP_TX frames (op25b's TCP resets) only to a peer that runs
  # XDP itself: a pass-through program on the subscriber side (pinned under
  # the lab's own bpffs directory; real NICs need nothing of the kind).
  mkdir -p "/sys/fs/bpf/$n-lab"
  nsenter --net="/run/netns/$s" "$ROOT/target/debug/op25b-agent" lab-pass-through "${n}s0" "/sys/fs/bpf/$n-lab/s0-pass"
  ip -n "$s" route add default via 100.64.1.1
  ip -n "$s" -6 route add default via 2001:db8:1000::1

  ip -n "$r" link set "${n}r0" up
  ip -n "$r" link set "${n}r1" up
  for a in 100.64.1.1/24 203.0.113.1/24; do ip -n "$r" addr add "$a" dev "${n}r0"; done
  for a in 2001:db8:1000::1/64 2001:db8:2000::1/64; do ip -n "$r" addr add "$a" dev "${n}r0" nodad; done
  for a in 198.51.100.1/24 192.0.2.1/24; do ip -n "$r" addr add "$a" dev "${n}r1"; done
  for a in 2001:db8:5100::1/64 2001:db8:25::1/64; do ip -n "$r" addr add "$a" dev "${n}r1" nodad; done

  ip -n "$i" link set "${n}i0" up
  for a in 198.51.100.25/24 192.0.2.25/24; do ip -n "$i" addr add "$a" dev "${n}i0"; done
  for a in 2001:db8:5100::25/64 2001:db8:25::25/64; do ip -n "$i" addr add "$a" dev "${n}i0" nodad; done
  ip -n "$i" route add default via 198.51.100.1
  ip -n "$i" -6 route add default via 2001:db8:5100::1

  ip netns exec "$i" /usr/bin/python3 "$HERE/lab-listener.py" 25 587 465 >/dev/null 2>&1 &
  disown
  # Wait until the mail servers answer over both families (through the
  # router, before op25b; IPv6 neighbour discovery takes a moment).
  for _ in $(seq 50); do
    if ip netns exec "$s" /usr/bin/python3 "$HERE/lab-connect.py" 100.64.1.2 198.51.100.25 587 0.2 >/dev/null 2>&1 &&
      ip netns exec "$s" /usr/bin/python3 "$HERE/lab-connect.py" 2001:db8:1000::2 2001:db8:5100::25 587 0.2 >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "lab $n: mail servers do not answer" >&2
  return 1
}

down() {
  local n=$1
  for ns in "${n}s" "${n}r" "${n}i"; do
    if ip netns list | grep -qw "$ns"; then
      for pid in $(ip netns pids "$ns"); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$ns"
    fi
  done
  rm -rf "/sys/fs/bpf/$n-lab"
}

# Demo state is global: the EXIT trap runs after demo() has returned.
LAB=o5lab LAB_DIR="" LAB_PIN=/sys/fs/bpf/op25b-lab AGENT_PID=""
cleanup() {
  if [ -n "$AGENT_PID" ]; then kill "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; fi
  down "$LAB"
  [ -z "$LAB_DIR" ] || rm -rf "$LAB_DIR"
  rm -rf "$LAB_PIN"
}

demo() {
  local n=$LAB dir pin=$LAB_PIN
  "$ROOT/scripts/setup-toolchain.sh"
  export PATH="$HOME/.cargo/bin:$PATH"
  echo "== building op25b"
  (cd "$ROOT" && cargo build --locked --bins -q)
  local agent="$ROOT/target/debug/op25b-agent"
  dir=$(mktemp -d /tmp/op25b-lab.XXXXXX)
  LAB_DIR=$dir
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  down "$n"; rm -rf "$pin"

  echo "== creating the lab (namespaces ${n}s, ${n}r, ${n}i)"
  up "$n"
  # The example config from deploy/, pointed at the lab's interface.
  cp -r "$ROOT/deploy/lists" "$dir/"
  sed -e "s#^pin_path = .*#pin_path = \"$pin\"#" -e "s#^on_exit = .*#on_exit = \"detach\"#" \
      -e "s#^name = \"eth1\"#name = \"${n}r0\"#" -e "s#^path = .*#path = \"$dir/events.jsonl\"#" \
      "$ROOT/deploy/op25b.toml" > "$dir/op25b.toml"
  "$agent" check-config "$dir/op25b.toml"

  echo "== starting op25b-agent on the router's subscriber-facing ${n}r0"
  nsenter --net="/run/netns/${n}r" "$agent" run --config "$dir/op25b.toml" 2> "$dir/agent.log" &
  AGENT_PID=$!
  for _ in $(seq 100); do ip -n "${n}r" link show "${n}r0" | grep -q 'prog/xdp' && break; sleep 0.1; done
  ip -n "${n}r" link show "${n}r0" | grep -q 'prog/xdp' || { cat "$dir/agent.log"; echo "agent did not attach" >&2; exit 1; }

  check() { # label src dst port expectation
    local got
    got=$(ip netns exec "${n}s" /usr/bin/python3 "$HERE/lab-connect.py" "$2" "$3" "$4" 1.0 | cut -d' ' -f1) || true
    printf '  %-44s %-9s (expected %s)%s\n' "$1" "$got" "$5" "$([ "$got" = "$5" ] || echo '  <-- UNEXPECTED')"
    [ "$got" = "$5" ]
  }
  local failed=0
  echo "== connections from the subscriber side (1 s timeout)"
  for fam in 4 6; do
    if [ $fam = 4 ]; then D=100.64.1.2 E=100.64.1.7 S=203.0.113.10 MX=198.51.100.25 RELAY=192.0.2.25
    else D=2001:db8:1000::2 E=2001:db8:1000::7 S=2001:db8:2000::10 MX=2001:db8:5100::25 RELAY=2001:db8:25::25; fi
    echo " IPv$fam"
    check "dynamic  -> outside MX:25"   $D $MX 25 blocked   || failed=1
    check "dynamic  -> outside MX:587"  $D $MX 587 connected || failed=1
    check "dynamic  -> outside MX:465"  $D $MX 465 connected || failed=1
    check "dynamic  -> ISP relay:25"    $D $RELAY 25 connected || failed=1
    check "exempt   -> outside MX:25"   $E $MX 25 connected || failed=1
    check "static   -> outside MX:25"   $S $MX 25 connected || failed=1
  done

  echo "== exempting 100.64.1.2 live: appending it to lists/exempt.txt"
  echo "100.64.1.2/32   # lab: added live" >> "$dir/lists/exempt.txt"
  local start=$SECONDS ok=0
  for _ in $(seq 20); do
    if ip netns exec "${n}s" /usr/bin/python3 "$HERE/lab-connect.py" 100.64.1.2 198.51.100.25 25 0.2 >/dev/null; then ok=1; break; fi
  done
  if [ $ok = 1 ]; then echo "  dynamic 100.64.1.2 -> outside MX:25 connected after the edit (within $((SECONDS - start + 1)) s)"
  else echo "  the live exemption did not take effect  <-- UNEXPECTED"; failed=1; fi

  echo "== the abuse desk: op25b-agent top --window 1h"
  nsenter --net="/run/netns/${n}r" "$agent" top --window 1h --config "$dir/op25b.toml"
  echo "== block events (JSON lines in $dir/events.jsonl)"
  sed -n '1,6p' "$dir/events.jsonl"
  echo "== the NOC: op25b series from http://127.0.0.1:9725/metrics (router namespace)"
  ip netns exec "${n}r" /usr/bin/python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9725/metrics").read().decode())' \
    | grep -E '^op25b_(blocked_connection_attempts_total|interface_attached|policy_prefixes|policy_reloads_total)|reason="blocked"' | grep -v ' 0$'
  echo "== op25b-agent status"
  nsenter --net="/run/netns/${n}r" "$agent" status --config "$dir/op25b.toml"
  echo "== agent log"
  sed 's/\x1b\[[0-9;]*m//g' "$dir/agent.log"
  if [ $failed = 0 ]; then echo "== lab: every check passed"; else echo "== lab: some checks FAILED"; exit 1; fi
}

case "${1:-demo}" in
  up) up "${2:?lab name}" ;;
  down) down "${2:?lab name}" ;;
  demo) demo ;;
  *) echo "usage: $0 [up NAME | down NAME]" >&2; exit 2 ;;
esac
