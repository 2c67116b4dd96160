#!/usr/bin/env bash
# Free-page reporting: how much of the memory a guest touched and then freed
# stays with its QEMU. Two kinds of VM of the busybox httpd demo image, in
# alternation: one with a live host directory (virtiofs; such a VM is never a
# template, clone or checkpoint, so it has the reporting balloon), and one
# booted in full without it (`--template off`, the template layout, so no
# balloon: the baseline). In each, once it answers and has idled, a process
# builds a 128 MiB string (busybox awk touches about twice that) and exits;
# QEMU's resident memory is read before, and 10 s after it exited. Medians
# over N runs.
#
# Usage: bench/free-pages.sh [RUNS]   (default 3). Needs root (virtiofsd).
# Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
# shellcheck source=bench/demo-vm.sh
. bench/demo-vm.sh
shared=$(mktemp -d)
echo 'a host file' > "$shared/note"
trap 'rm -rf "$shared"; bench_cleanup' EXIT

# RSS (KiB): a VM's guest RAM is anonymous memory, or with a live share a
# shared memfd, so Rss counts both alike.
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
