#!/usr/bin/env bash
# Kernel boot knobs: the guest kernel and initramfs booted under QEMU as a
# service VM boots them (microvm, the same command line), with the init
# replaced by an immediate poweroff, so the time is the kernel's and the
# initramfs's alone. Variants alternate in one run; medians over N runs:
#   - the kernel as a bzImage (it decompresses and relocates itself) against
#     the ELF inside it entered at its PVH entry point (what the bundle ships);
#   - the initramfs compressed with gzip (what the bundle ships), zstd or lz4;
#   - tsc=reliable on top (no clocksource watchdog), for the stalls under load.
# The baseline is the bundle as it is (PVH ELF, gzip initramfs). The bzImage
# is the bundle's kernel package's, fetched with apt-get download.
#
# Usage: bench/kernel-boot.sh [RUNS]   (default 5). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
hyper() { node dist/cli/index.js "$@"; }
kernel=$(HYPER_ACCEL=tcg hyper setup 2> /dev/null | awk '/^kernel/ { print $2 }')
bundle=$(dirname "$kernel")
version=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).kernelVersion)' "$bundle/manifest.json")
work=$(mktemp -d /tmp/hyper-kernel-bench-XXXX)
trap 'rm -rf "$work"' EXIT

(cd "$work" && apt-get download "linux-image-$version" > /dev/null 2>&1) ||
  { echo "apt-get download linux-image-$version failed (apt-get update first?)" >&2; exit 1; }
dpkg-deb -x "$work"/linux-image-*.deb "$work/deb"
bzimage=$(ls "$work/deb/boot/vmlinuz-"*)
zcat "$bundle/initrd.img" > "$work/initrd.cpio"
zstd -q -19 "$work/initrd.cpio" -o "$work/initrd.zst"
lz4 -q -l -9 "$work/initrd.cpio" "$work/initrd.lz4"

# The service VM's command line under TCG (src/vm/qemu/args.ts), tsc_early_khz as the host's.
tsc_khz=$(awk -F': ' '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
base_cmdline="console=ttyS0 quiet panic=-1 reboot=t pci=off cryptomgr.notests tsc_early_khz=${tsc_khz:-2000000}"

now_ms() { date +%s%3N; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# One boot to poweroff: prints its ms, or fails when the guest did not power off.
boot() {
  local kernel=$1 initrd=$2 extra=$3 start ms
  start=$(now_ms)
  timeout 60 qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on -accel tcg,thread=multi -cpu max \
    -m 512M -smp 1 -nodefaults -no-user-config -display none -no-reboot \
    -kernel "$kernel" -initrd "$initrd" -append "$base_cmdline $extra rdinit=/bin/poweroff -- -f" \
    -serial "file:$work/console" > /dev/null 2>&1 || true
  ms=$(($(now_ms) - start))
  grep -q 'Power down' "$work/console" || { echo "no clean poweroff: $kernel $initrd $extra" >&2; return 1; }
  echo "$ms"
}

declare -A variants=(
  [pvh-gzip]="$kernel|$bundle/initrd.img|"
  [bzimage-gzip]="$bzimage|$bundle/initrd.img|"
  [pvh-zstd]="$kernel|$work/initrd.zst|"
  [pvh-lz4]="$kernel|$work/initrd.lz4|"
  [pvh-gzip-tsc-reliable]="$kernel|$bundle/initrd.img|tsc=reliable"
)
order=(pvh-gzip bzimage-gzip pvh-zstd pvh-lz4 pvh-gzip-tsc-reliable)
declare -A times=()
for _ in $(seq "$runs"); do
  for name in "${order[@]}"; do
    IFS='|' read -r k i e <<< "${variants[$name]}"
    times[$name]+="$(boot "$k" "$i" "$e") "
  done
done

echo "Kernel boot to poweroff under TCG, $runs runs each, alternating (kernel $version, $(nproc) cores)"
echo "sizes: vmlinux $(($(stat -c %s "$kernel") / 1024)) KiB, bzImage $(($(stat -c %s "$bzimage") / 1024)) KiB;" \
  "initramfs $(($(stat -c %s "$work/initrd.cpio") / 1024)) KiB unpacked, gzip $(($(stat -c %s "$bundle/initrd.img") / 1024))," \
  "zstd $(($(stat -c %s "$work/initrd.zst") / 1024)), lz4 $(($(stat -c %s "$work/initrd.lz4") / 1024)) KiB"
baseline=$(tr ' ' '\n' <<< "${times[pvh-gzip]}" | grep . | median)
for name in "${order[@]}"; do
  m=$(tr ' ' '\n' <<< "${times[$name]}" | grep . | median)
  printf '%-24s median %6s ms  ratio %5s  runs %s\n' "$name" "$m" \
    "$(awk -v a="$m" -v b="$baseline" 'BEGIN { printf "%.2f", a / b }')" "${times[$name]}"
done
