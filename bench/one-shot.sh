#!/usr/bin/env bash
# One-shot container benchmark: wall time of `hyper run --rm IMAGE CMD` (boot,
# run the command to its end, follow its output, exit with its code, remove
# the VM) against, as the baseline in the same run, what a caller had to do
# before one-shot containers existed: `hyper run -d` of a command that stays
# up, then `hyper rm -f`. Same image (the demo's busybox, built offline),
# user networking, TCG unless HYPER_ACCEL says otherwise. Medians over N runs.
#
# Usage: bench/one-shot.sh [RUNS]   (default 5). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
export HYPER_STATE_DIR=$(mktemp -d /tmp/hyper-bench-oneshot-XXXX)
export HYPER_ACCEL=${HYPER_ACCEL:-tcg} HYPER_NETWORK=user
trap 'node dist/cli/index.js down >/dev/null 2>&1 || true; rm -rf "$HYPER_STATE_DIR"' EXIT
hyper() { node dist/cli/index.js "$@"; }

image=${HYPER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hyper}/demo-image
[ -f "$image/index.json" ] || bash test/fixtures/build-busybox-image.sh "$image" >/dev/null
hyper setup >/dev/null 2>&1
# Warm the root filesystem so neither side builds it.
hyper run --rm --entrypoint /bin/true "oci:$image" >/dev/null 2>&1

now_ms() { date +%s%3N; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

oneshot=() detached=()
for i in $(seq 1 "$runs"); do
  start=$(now_ms)
  out=$(hyper run --rm --entrypoint /bin/sh "oci:$image" -c 'echo hi; exit 3' 2>/dev/null) && code=0 || code=$?
  oneshot+=($(($(now_ms) - start)))
  [ "$out" = hi ] && [ "$code" = 3 ] || { echo "bench/one-shot.sh: run --rm gave \"$out\", exit $code" >&2; exit 1; }
  start=$(now_ms)
  hyper run -d --name "bench-$i" --entrypoint /bin/sh "oci:$image" -c 'echo hi; exec sleep 600' >/dev/null 2>&1
  hyper rm -f "bench-$i" >/dev/null
  detached+=($(($(now_ms) - start)))
done
m_oneshot=$(printf '%s\n' "${oneshot[@]}" | median)
m_detached=$(printf '%s\n' "${detached[@]}" | median)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), accel $HYPER_ACCEL"
echo "runs: $runs (medians, ms)"
echo "hyper run -d + hyper rm -f (baseline):           $m_detached"
echo "hyper run --rm sh -c 'echo hi; exit 3' (one-shot): $m_oneshot ($(awk -v a="$m_oneshot" -v b="$m_detached" 'BEGIN { printf "%.2f", a / b }')x baseline)"
