#!/usr/bin/env bash
# KVM probe benchmark: wall time of `hyper setup` (fresh probe, nothing cached)
# when the probe's QEMU aborts (as on AMD EPYC with kvm_pvm: SIGABRT), when it
# hangs (the guest never powers off: the 6 s limit), and, as the baseline in
# the same run, `hyper setup --accel tcg`, which does not probe. Medians over
# N runs. Stand-in programs take QEMU's place (HYPER_QEMU) and /dev/null takes
# /dev/kvm's (HYPER_KVM_DEVICE), so it runs the same on any host.
#
# Usage: bench/probe.sh [RUNS]   (default 5). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
work=$(mktemp -d /tmp/hyper-bench-probe-XXXX)
trap 'rm -rf "$work"' EXIT

bundle=$(dirname "$(node dist/cli/index.js setup --accel tcg 2>/dev/null | awk '/^kernel / { print $2 }')")
[ -f "$bundle/manifest.json" ] || { echo "bench/probe.sh: hyper setup did not name the guest bundle" >&2; exit 1; }
printf '#!/bin/sh\necho "error: failed to set MSR 0x10a to 0x0" >&2\nkill -ABRT $$\n' > "$work/abort"
printf '#!/bin/sh\nexec sleep 60\n' > "$work/hang"
chmod +x "$work/abort" "$work/hang"

now_ms() { date +%s%3N; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# setup_ms QEMU ACCEL: one `hyper setup` with an empty cache dir (no probe answer kept).
setup_ms() {
  local cache start
  cache=$(mktemp -d "$work/cache-XXXX")
  start=$(now_ms)
  HYPER_QEMU=$1 HYPER_KVM_DEVICE=/dev/null HYPER_CACHE_DIR=$cache HYPER_GUEST_BUNDLE_DIR=$bundle \
    node dist/cli/index.js setup --accel "$2" >/dev/null 2>&1
  echo $(($(now_ms) - start))
}

tcg=() abort=() hang=()
for _ in $(seq 1 "$runs"); do
  tcg+=($(setup_ms "$work/abort" tcg))
  abort+=($(setup_ms "$work/abort" auto))
  hang+=($(setup_ms "$work/hang" auto))
done
m_tcg=$(printf '%s\n' "${tcg[@]}" | median)
m_abort=$(printf '%s\n' "${abort[@]}" | median)
m_hang=$(printf '%s\n' "${hang[@]}" | median)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo "runs: $runs (medians, ms)"
echo "hyper setup --accel tcg (no probe, baseline): $m_tcg"
echo "hyper setup, probe QEMU aborts (SIGABRT):     $m_abort ($(awk -v a="$m_abort" -v b="$m_tcg" 'BEGIN { printf "%.2f", a / b }')x baseline, probe cost $((${m_abort%.*} - ${m_tcg%.*})) ms)"
echo "hyper setup, probe QEMU hangs (6 s limit):    $m_hang ($(awk -v a="$m_hang" -v b="$m_tcg" 'BEGIN { printf "%.2f", a / b }')x baseline, probe cost $((${m_hang%.*} - ${m_tcg%.*})) ms)"
