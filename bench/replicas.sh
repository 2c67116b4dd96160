#!/usr/bin/env bash
# Requests per second through one published port: busybox httpd as a plain
# process on the host's loopback (the floor), as one service VM, and as 3
# replicas behind one port (the balancer: nftables' round robin in bridge
# mode, hyper's forwarder in user mode). Every server is the same busybox
# httpd serving the same small page; `ab` makes N requests over C
# connections at a time, each request on a new connection. The variants
# alternate within each run; medians over RUNS runs, per network mode.
#
# Everything runs inside a network namespace this script makes (and
# removes), so the bridge, its rules and the traffic stay in there.
#
# Usage: bench/replicas.sh [RUNS] [REQUESTS] [MODES]   (defaults 5, 2000, "user bridge"). Needs root.
# Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != --inside ]; then
  ns=hyb-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
  ip netns add "$ns"
  trap 'ip netns del "$ns"' EXIT
  ip -n "$ns" link set lo up
  ip netns exec "$ns" bash "$0" --inside "$@"
  exit
fi
shift
runs=${1:-5}
requests=${2:-2000}
modes=${3:-user bridge}
concurrency=8
work=$(mktemp -d /tmp/hyper-replicas-bench-XXXX)
export HYPER_STATE_DIR=$work/state
host_pid=
cleanup() {
  node dist/cli/index.js down --time 0 > /dev/null 2>&1 || true
  [ -n "$host_pid" ] && kill "$host_pid" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

layout=$(ls -d "${HYPER_CACHE_DIR:-$HOME/.cache/hyper}"/fixtures/busybox-httpd-*/ 2> /dev/null | head -1)
if [ -z "$layout" ]; then
  layout=$work/busybox
  bash test/fixtures/build-busybox-image.sh "$layout" > /dev/null
fi

free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rps() {
  ab -q -n "$requests" -c "$concurrency" "http://127.0.0.1:$1/" 2>&1 \
    | awk '/^Requests per second/ { print int($4) } /^Failed requests/ && $3 > 0 { print "failed requests: " $3 > "/dev/stderr" }'
}

# The same page everywhere: the server's own name, as the replicas answer.
mkdir -p "$work/www"
echo host > "$work/www/index.html"
host_port=$(free_port)
busybox httpd -f -p "127.0.0.1:$host_port" -h "$work/www" &
host_pid=$!

echo "requests per second through one published port, medians of $runs runs ($requests requests, $concurrency at a time, a connection each):"
for mode in $modes; do
  one=$(free_port)
  three=$(free_port)
  cat > "$work/compose.yml" << YAML
services:
  single:
    image: oci:$layout
    entrypoint: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["$one:80"]
  web:
    image: oci:$layout
    entrypoint: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["$three:80"]
    deploy: { replicas: 3 }
YAML
  node dist/cli/index.js up -f "$work/compose.yml" --network "$mode" > "$work/up.log" 2>&1 \
    || { cat "$work/up.log" >&2; exit 1; }
  # One warm-up pass each, so the first run does not pay for the guests' first requests.
  rps "$host_port" > /dev/null
  rps "$one" > /dev/null
  rps "$three" > /dev/null
  host_runs='' one_runs='' three_runs=''
  for _ in $(seq 1 "$runs"); do
    host_runs+="$(rps "$host_port") "
    one_runs+="$(rps "$one") "
    three_runs+="$(rps "$three") "
  done
  node dist/cli/index.js down --time 0 > /dev/null 2>&1
  h=$(median <<< "$host_runs")
  o=$(median <<< "$one_runs")
  t=$(median <<< "$three_runs")
  echo "  network $mode (runs: host $host_runs| 1 VM $one_runs| 3 replicas $three_runs)"
  printf '    %-34s %8s req/s\n' 'host process (floor)' "$h"
  printf '    %-34s %8s req/s  (%.3fx the host process)\n' '1 service VM' "$o" "$(awk -v a="$o" -v b="$h" 'BEGIN { print a / b }')"
  printf '    %-34s %8s req/s  (%.3fx the host process, %.2fx one VM)\n' '3 replicas behind one port' "$t" \
    "$(awk -v a="$t" -v b="$h" 'BEGIN { print a / b }')" "$(awk -v a="$t" -v b="$o" 'BEGIN { print a / b }')"
done
echo "  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), accel ${HYPER_ACCEL:-auto}"
