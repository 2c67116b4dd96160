#!/usr/bin/env bash
# Free-page reporting: how much of the memory a guest touched and then freed
# stays with its QEMU. Two kinds of VM of the busybox httpd demo image, in
# alternation: one with a live host directory (virtiofs; such a VM is never a
# template, clone or checkpoint, so it has the reporting balloon), and one
# booted in full without it (`--template off`, the template layout, so no
# balloon: the baseline). In each, once it answers and has idled, a process
# builds a 128 MiB string (busybox awk touches about twice that) and exits; QEMU's resident memory is read
# before, and 10 s after it exited. Medians over N runs.
#
# Usage: bench/free-pages.sh [RUNS]   (default 3). Needs root (virtiofsd).
# Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
hyper() { node dist/cli/index.js "$@"; }
own_state=
if [ -z "${HYPER_STATE_DIR:-}" ]; then
  HYPER_STATE_DIR=$(mktemp -d /tmp/hyper-bench-XXXX)
  own_state=$HYPER_STATE_DIR
fi
export HYPER_STATE_DIR
cache=${HYPER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hyper}
image=$cache/demo-image
[ -f "$image/index.json" ] || bash test/fixtures/build-busybox-image.sh "$image" > /dev/null
hyper setup > /dev/null 2>&1
export HYPER_ACCEL=$(hyper setup 2> /dev/null | awk '/^accel/ { print $2 }')
shared=$(mktemp -d)
echo 'a host file' > "$shared/note"
trap 'rm -rf "$shared"; for n in $(hyper ps --json | node -e "for (const r of JSON.parse(require(\"fs\").readFileSync(0))) console.log(r.name)"); do hyper rm -f "$n" > /dev/null; done; [ -z "$own_state" ] || rm -rf "$own_state"' EXIT

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
wait_http() { until curl -fsS -o /dev/null "http://127.0.0.1:$1/" 2> /dev/null; do sleep 0.05; done; }
free_port() { node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'; }
# RSS (KiB): a VM's guest RAM is anonymous memory, or a shared memfd with a live share, so Rss counts both alike.
rss_of() { awk '/^Rss:/ { print $2 }' "/proc/$1/smaps_rollup"; }

# One VM: boot, idle, read RSS, fill and free memory in the guest, wait, read again. Prints "before after".
measure() {
  local name=$1 port qpid before after
  shift
  port=$(free_port)
  hyper run --name "$name" -p "$port:80" "$@" "oci:$image" > /dev/null 2>&1
  wait_http "$port"
  sleep 5
  qpid=$(cat "$HYPER_STATE_DIR/vms/$name/qemu.pid")
  before=$(rss_of "$qpid")
  # busybox awk writes the 128 MiB string in full (and a copy of it), then exits.
  hyper exec "$name" -- awk 'BEGIN { s = sprintf("%134217728s", ""); print length(s) }' > /dev/null
  sleep 10
  after=$(rss_of "$qpid")
  hyper rm -f "$name" > /dev/null
  echo "$before $after"
}

report_before=() report_after=() plain_before=() plain_after=()
for i in $(seq 1 "$runs"); do
  read -r b a < <(measure "bench-share-$i" -v "$shared:/data:ro")
  report_before+=("$b") report_after+=("$a")
  read -r b a < <(measure "bench-plain-$i" --template off)
  plain_before+=("$b") plain_after+=("$a")
done

med() { printf '%s\n' "$@" | median; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
kept() { local -n b=$1 a=$2; local i out=(); for i in "${!b[@]}"; do out+=($((a[i] - b[i]))); done; med "${out[@]}"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), accel $HYPER_ACCEL; runs: $runs, alternating"
echo "live share, free-page reporting: RSS idle $(mib "$(med "${report_before[@]}")") MiB, 10 s after the guest freed it $(mib "$(med "${report_after[@]}")") MiB; kept $(mib "$(kept report_before report_after)") MiB"
echo "full boot, no balloon (baseline): RSS idle $(mib "$(med "${plain_before[@]}")") MiB, 10 s after the guest freed it $(mib "$(med "${plain_after[@]}")") MiB; kept $(mib "$(kept plain_before plain_after)") MiB"
