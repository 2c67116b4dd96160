#!/usr/bin/env bash
# Boot benchmark: time from `hyper run` to the service answering HTTP on its
# published port, and QEMU's RSS per idle VM; medians over N runs. The
# baseline, measured in the same run, is the same busybox httpd started as a
# plain host process (no VM): the floor that isolation is paid against.
#
# Usage: bench/boot.sh [RUNS]   (default 5). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
hyper() { node dist/cli/index.js "$@"; }
own_state=
if [ -z "${HYPER_STATE_DIR:-}" ]; then
  HYPER_STATE_DIR=$(mktemp -d /tmp/hyper-bench-XXXX)
  own_state=$HYPER_STATE_DIR
fi
export HYPER_STATE_DIR
cache=${HYPER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hyper}
image=$cache/demo-image
[ -f "$image/index.json" ] || bash test/fixtures/build-busybox-image.sh "$image" >/dev/null
hyper setup >/dev/null 2>&1
accel=$(hyper setup 2>/dev/null | awk '/^accel/ { print $2 }')
export HYPER_ACCEL=$accel

now_ms() { date +%s%3N; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
wait_http() { until curl -fsS -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; do sleep 0.01; done; }
free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }

busybox=$(mktemp -d)
trap 'rm -rf "$busybox"; for n in $(hyper ps --json | node -e "for (const r of JSON.parse(require(\"fs\").readFileSync(0))) console.log(r.name)"); do hyper rm -f "$n" >/dev/null; done; [ -z "$own_state" ] || rm -rf "$own_state"' EXIT
tar -C "$busybox" -xzf "$image/blobs/sha256/$(node -e 'const fs = require("fs"); const i = JSON.parse(fs.readFileSync(process.argv[1] + "/index.json")); const m = JSON.parse(fs.readFileSync(process.argv[1] + "/blobs/sha256/" + i.manifests[0].digest.slice(7))); console.log(m.layers[0].digest.slice(7))' "$image")"

host_ms=() vm_ms=() rss_kib=() host_rss=()
for i in $(seq 1 "$runs"); do
  port=$(free_port)
  start=$(now_ms)
  "$busybox/bin/busybox" httpd -f -p "127.0.0.1:$port" -h "$busybox/www" & pid=$!
  wait_http "$port"
  host_ms+=($(($(now_ms) - start)))
  host_rss+=($(awk '/VmRSS/ { print $2 }' "/proc/$pid/status"))
  kill "$pid"; wait "$pid" 2>/dev/null || true

  port=$(free_port)
  start=$(now_ms)
  hyper run --name "bench-$i" -p "$port:80" "oci:$image" >/dev/null 2>&1
  wait_http "$port"
  vm_ms+=($(($(now_ms) - start)))
  sleep 3 # idle
  qpid=$(cat "$HYPER_STATE_DIR/vms/bench-$i/qemu.pid")
  rss_kib+=($(awk '/VmRSS/ { print $2 }' "/proc/$qpid/status"))
  hyper rm -f "bench-$i" >/dev/null
done

m_host=$(printf '%s\n' "${host_ms[@]}" | median)
m_vm=$(printf '%s\n' "${vm_ms[@]}" | median)
m_rss=$(printf '%s\n' "${rss_kib[@]}" | median)
m_host_rss=$(printf '%s\n' "${host_rss[@]}" | median)
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), accel $accel"
echo "runs: $runs"
echo "hyper run -> HTTP answer (ms): median $m_vm  [${vm_ms[*]}]"
echo "host process -> HTTP answer (ms): median $m_host  [${host_ms[*]}]"
echo "ratio vm/host start: $(awk -v a="$m_vm" -v b="$m_host" 'BEGIN { printf "%.1f", a / (b > 0 ? b : 1) }')x"
echo "QEMU RSS per idle VM (MiB, 512 MiB guest): median $(awk -v k="$m_rss" 'BEGIN { printf "%.1f", k / 1024 }')  [${rss_kib[*]} KiB]"
echo "host httpd RSS (MiB): median $(awk -v k="$m_host_rss" 'BEGIN { printf "%.1f", k / 1024 }')"
