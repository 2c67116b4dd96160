#!/usr/bin/env bash
# Jail benchmark: what QEMU's jail costs (seccomp filter, drop to the VM's own
# uid, chroot, disks handed as descriptors, cgroup). Times `hyper run` to the
# busybox httpd answering on its published port, full boot and clone of the
# boot template, with the jail and without it (HYPER_JAIL=off, the baseline,
# measured in the same run, the four kinds alternating), and QEMU's own
# (anonymous) memory per idle VM in each; medians over N runs.
#
# Usage: bench/jail.sh [RUNS]   (default 5). Prints figures; asserts nothing.
# Run as root: as a plain user there is no uid to drop to and no cgroup.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
# shellcheck source=bench/demo-vm.sh
. bench/demo-vm.sh
trap 'bench_cleanup' EXIT

anon_of() { awk '/^Anonymous:/ { print $2 }' "/proc/$1/smaps_rollup"; }

# One VM: start, wait for HTTP, idle, read its own memory, remove. Prints "ms anonymous-KiB".
vm_run() {
  local name=$1 mode=$2 jail=$3 port start ms qpid
  port=$(free_port)
  start=$(now_ms)
  HYPER_JAIL=$jail hyper run --name "$name" --template "$mode" -p "$port:80" "oci:$image" > /dev/null 2>&1
  wait_http "$port"
  ms=$(($(now_ms) - start))
  sleep 2 # idle
  qpid=$(cat "$HYPER_STATE_DIR/vms/$name/qemu.pid")
  echo "$ms $(anon_of "$qpid")"
  HYPER_JAIL=$jail hyper rm -f "$name" > /dev/null
}

# The boot templates (one made with the jail, one without, the same identity:
# the jail is not part of it) are made before the timed runs.
hyper run --name bench-warm --template refresh -p "$(free_port):80" "oci:$image" > /dev/null 2>&1
hyper rm -f bench-warm > /dev/null

declare -A ms anon
for i in $(seq 1 "$runs"); do
  for kind in boot:off:on boot:off:off clone:auto:on clone:auto:off; do
    IFS=: read -r what mode jail <<< "$kind"
    read -r t a < <(vm_run "bench-$what-$jail-$i" "$mode" "$jail")
    ms[$what-$jail]+="$t " anon[$what-$jail]+="$a "
  done
done

med() { printf '%s\n' $1 | median; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / (b > 0 ? b : 1) }'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), accel $accel, $(id -un)"
echo "runs: $runs (boot with and without the jail, clone with and without, alternating)"
for what in boot clone; do
  on=$(med "${ms[$what-on]}") off=$(med "${ms[$what-off]}")
  echo "hyper run -> HTTP answer, $what, jail on (ms): median $on  [${ms[$what-on]% }]"
  echo "hyper run -> HTTP answer, $what, jail off (ms): median $off  [${ms[$what-off]% }]"
  echo "ratio $what jail on/off: $(ratio "$on" "$off")x"
  aon=$(med "${anon[$what-on]}") aoff=$(med "${anon[$what-off]}")
  echo "QEMU own memory, idle, $what (MiB): jail on $(mib "$aon"), off $(mib "$aoff"); ratio $(ratio "$aon" "$aoff")x"
done
