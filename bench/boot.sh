#!/usr/bin/env bash
# Boot benchmark: time from `hyper run` to the service answering HTTP on its
# published port, full boot against a clone of the boot template, and the
# memory of each idle VM (RSS, and its own anonymous part); medians over N runs. The
# baseline, measured in the same run, is the same busybox httpd started as a
# plain host process (no VM): the floor that isolation is paid against.
#
# Usage: bench/boot.sh [RUNS]   (default 5). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
# shellcheck source=bench/demo-vm.sh
. bench/demo-vm.sh


busybox=$(mktemp -d)
trap 'rm -rf "$busybox"; bench_cleanup' EXIT
tar -C "$busybox" -xzf "$image/blobs/sha256/$(node -e 'const fs = require("fs"); const i = JSON.parse(fs.readFileSync(process.argv[1] + "/index.json")); const m = JSON.parse(fs.readFileSync(process.argv[1] + "/blobs/sha256/" + i.manifests[0].digest.slice(7))); console.log(m.layers[0].digest.slice(7))' "$image")"

# A process's resident memory and, of it, the anonymous part (KiB, from
# smaps_rollup): what this VM alone costs. A clone's other resident pages are
# the template's file pages, shared with every clone of it and kept once.
mem_of() { awk '/^Rss:/ { r = $2 } /^Anonymous:/ { a = $2 } END { print r, a }' "/proc/$1/smaps_rollup"; }

# One VM: start, wait for HTTP, idle, read its memory, remove. Prints "ms rss anonymous".
vm_run() {
  local name=$1 mode=$2 port start ms qpid
  port=$(free_port)
  start=$(now_ms)
  hyper run --name "$name" --template "$mode" -p "$port:80" "oci:$image" >/dev/null 2>&1
  wait_http "$port"
  ms=$(($(now_ms) - start))
  sleep 3 # idle
  qpid=$(cat "$HYPER_STATE_DIR/vms/$name/qemu.pid")
  echo "$ms $(mem_of "$qpid")"
  hyper rm -f "$name" >/dev/null
}

# The boot template is made before the timed runs (its one-off cost is printed apart).
start=$(now_ms)
hyper run --name bench-warm --template refresh -p "$(free_port):80" "oci:$image" >/dev/null 2>&1
template_ms=$(($(now_ms) - start))
hyper rm -f bench-warm >/dev/null

host_ms=() host_rss=() boot_ms=() boot_rss=() boot_anon=() clone_ms=() clone_rss=() clone_anon=()
for i in $(seq 1 "$runs"); do
  port=$(free_port)
  start=$(now_ms)
  "$busybox/bin/busybox" httpd -f -p "127.0.0.1:$port" -h "$busybox/www" & pid=$!
  wait_http "$port"
  host_ms+=($(($(now_ms) - start)))
  host_rss+=($(awk '/VmRSS/ { print $2 }' "/proc/$pid/status"))
  kill "$pid"; wait "$pid" 2>/dev/null || true

  read -r ms rss anon < <(vm_run "bench-boot-$i" off)
  boot_ms+=("$ms") boot_rss+=("$rss") boot_anon+=("$anon")
  read -r ms rss anon < <(vm_run "bench-clone-$i" auto)
  clone_ms+=("$ms") clone_rss+=("$rss") clone_anon+=("$anon")
done

med() { printf '%s\n' "$@" | median; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / (b > 0 ? b : 1) }'; }
m_host=$(med "${host_ms[@]}") m_boot=$(med "${boot_ms[@]}") m_clone=$(med "${clone_ms[@]}")
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), accel $accel"
echo "runs: $runs (full boot and clone alternate)"
echo "making the boot template, then a clone answering (ms, once): $template_ms"
echo "hyper run -> HTTP answer, full boot (ms): median $m_boot  [${boot_ms[*]}]"
echo "hyper run -> HTTP answer, clone of the boot template (ms): median $m_clone  [${clone_ms[*]}]"
echo "host process -> HTTP answer (ms): median $m_host  [${host_ms[*]}]"
echo "ratio clone/full boot: $(ratio "$m_clone" "$m_boot")x; clone/host: $(ratio "$m_clone" "$m_host")x; full boot/host: $(ratio "$m_boot" "$m_host")x"
echo "QEMU memory per idle VM (MiB, 512 MiB guest), medians: full boot RSS $(mib "$(med "${boot_rss[@]}")") own $(mib "$(med "${boot_anon[@]}")"); clone RSS $(mib "$(med "${clone_rss[@]}")") own $(mib "$(med "${clone_anon[@]}")") (own: anonymous pages; the rest of a clone's RSS is the template's, shared)"
echo "ratio clone/full boot own memory: $(ratio "$(med "${clone_anon[@]}")" "$(med "${boot_anon[@]}")")x"
echo "host httpd RSS (MiB): median $(mib "$(med "${host_rss[@]}")")"
