#!/usr/bin/env bash
# Checkpoint restore benchmark: a busybox httpd VM of the demo image is
# checkpointed once, then restored in place N times; each restore is timed
# from `hyper restore` to the service answering HTTP again, and by the
# engine's own figure ("restored ... in N ms", without Node's start). The
# baseline, measured in the same run: the same service started anew as a
# clone of the boot template (`hyper run`), to answering, which is what a
# job without the checkpoint would do.
#
# Usage: bench/restore.sh [RUNS]   (default 5). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
# shellcheck source=bench/demo-vm.sh
. bench/demo-vm.sh
trap bench_cleanup EXIT

port=$(free_port)
hyper run --name bench-restore -p "$port:80" "oci:$image" > /dev/null 2>&1
wait_http "$port"
hyper snapshot --checkpoint bench-restore ready > /dev/null 2>&1

restore_ms=() engine_ms=() clone_ms=()
for i in $(seq 1 "$runs"); do
  start=$(now_ms)
  said=$(hyper restore bench-restore ready 2>&1 >/dev/null)
  wait_http "$port"
  restore_ms+=($(($(now_ms) - start)))
  engine_ms+=("$(sed -n 's/.*restored ready in \([0-9]*\) ms.*/\1/p' <<< "$said")")

  clone_port=$(free_port)
  start=$(now_ms)
  hyper run --name "bench-clone-$i" -p "$clone_port:80" "oci:$image" > /dev/null 2>&1
  wait_http "$clone_port"
  clone_ms+=($(($(now_ms) - start)))
  hyper rm -f "bench-clone-$i" > /dev/null
done

restore=$(printf '%s\n' "${restore_ms[@]}" | median)
engine=$(printf '%s\n' "${engine_ms[@]}" | median)
clone=$(printf '%s\n' "${clone_ms[@]}" | median)
echo "runs $runs, accel $accel"
echo "restore to answering      median ${restore} ms   (${restore_ms[*]})"
echo "  of it, the engine's     median ${engine} ms   (${engine_ms[*]})"
echo "clone to answering        median ${clone} ms   (${clone_ms[*]})"
awk -v c="$clone" -v r="$restore" 'BEGIN { printf "ratio clone / restore     %.2fx\n", c / r }'
