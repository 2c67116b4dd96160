#!/usr/bin/env bash
# Builds the guest bundle from distro packages: a kernel (vmlinux, the ELF
# QEMU enters at its PVH entry point; vmlinuz, the bzImage, when the kernel
# has none) and an initramfs (initrd.img) with busybox, the guest init, our
# guest programs, the QEMU guest agent with its libraries, and the virtio
# modules the kernel needs.
#
# Usage: guest/build.sh OUT_DIR
# Env:   HYPER_GUEST_KERNEL_PACKAGE  kernel meta package (default: the distro's cloud/kvm kernel)
#        HYPER_GUEST_RECIPE_HASH     recorded in OUT_DIR/manifest.json
# Needs: apt-get, dpkg-deb, depmod (kmod), gcc with a static libc, readelf
#        (binutils), cpio, gzip, and lz4, zstd and xz for compressed kernels
#        and modules.
set -euo pipefail

out=${1:?usage: build.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/hyper-guest-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Modules the init loads: virtio transport, disk, network, console ports,
# vsock, fw_cfg (settings from the host), ext4 (built in on most kernels),
# virtiofs (shared host directories) and the balloon (free-page reporting).
wanted_modules="virtio_mmio virtio_blk virtio_net virtio_console vmw_vsock_virtio_transport qemu_fw_cfg ext4 virtiofs virtio_balloon"

say() { echo "guest/build.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# Unpacks a bzImage's payload ($1) into $2, by the setup header's
# payload_offset and payload_length (Documentation/arch/x86/boot.rst).
extract_elf() {
  local image=$1 sects offset length start magic unpack
  sects=$(od -An -t u1 -j $((0x1f1)) -N 1 "$image" | tr -d ' ')
  [ "$sects" -ne 0 ] || sects=4
  offset=$(od -An -t u4 -j $((0x248)) -N 4 "$image" | tr -d ' ')
  length=$(od -An -t u4 -j $((0x24c)) -N 4 "$image" | tr -d ' ')
  start=$(((sects + 1) * 512 + offset))
  magic=$(od -An -t x1 -j "$start" -N 4 "$image" | tr -d ' ')
  case "$magic" in
    02214c18) unpack="lz4 -dc" ;;
    28b52ffd) unpack="zstd -dcq" ;;
    fd377a58) unpack="xz -dc" ;;
    1f8b08*) unpack="gzip -dc" ;;
    *) return 1 ;;
  esac
  # The payload ends with the kernel's size, which some unpackers call trailing
  # garbage: their status says nothing, the result is checked instead.
  dd if="$image" iflag=skip_bytes,count_bytes skip="$start" count="$length" status=none \
    | $unpack > "$2" 2> /dev/null || true
  complete_elf "$2"
}

# An ELF whose loadable segments all lie within the file (not cut short).
complete_elf() {
  local size end=0 type offset vaddr paddr filesz rest
  readelf -h "$1" > /dev/null 2>&1 || return 1
  size=$(stat -c %s "$1")
  while read -r type offset vaddr paddr filesz rest; do
    [ "$type" = LOAD ] || continue
    if ((offset + filesz > end)); then end=$((offset + filesz)); fi
  done < <(readelf -lW "$1")
  [ "$end" -gt 0 ] && [ "$end" -le "$size" ]
}

# Xen's PHYS32_ENTRY note (type 18): where a PVH loader enters the kernel.
has_pvh_entry() {
  local notes
  notes=$(readelf -n "$1" 2> /dev/null) || return 1
  grep -Eq 'Xen[[:space:]]+0x[0-9a-f]+[[:space:]]+(Unknown note type: \(0x00000012\)|XEN_ELFNOTE_PHYS32_ENTRY)' <<< "$notes"
}

default_kernel_package() {
  local id=""
  [ -r /etc/os-release ] && id=$(. /etc/os-release && echo "${ID:-}")
  case "$id" in
    ubuntu) echo linux-image-kvm ;;
    *) echo linux-image-cloud-amd64 ;;
  esac
}

# Real (non-virtual) packages that $1 depends on, whose names match $2.
depends_matching() {
  apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "$1" \
    | awk -v re="$2" '$1 ~ /Depends:$/ && $2 !~ /^</ && $2 ~ re { print $2 }' | sort -u
}

download() {
  (cd "$work/debs" && apt-get download "$@" >/dev/null 2>"$work/apt.err") \
    || die "apt-get download $* failed (run apt-get update first?): $(tail -3 "$work/apt.err")"
}

mkdir -p "$work/debs" "$work/root" "$work/initrd"

kernel_meta=${HYPER_GUEST_KERNEL_PACKAGE:-$(default_kernel_package)}
say "kernel package: $kernel_meta"
kernel_packages=$(depends_matching "$kernel_meta" '^linux-(image|modules)(-extra)?-[0-9]')
[ -n "$kernel_packages" ] || kernel_packages=$kernel_meta
for package in $kernel_packages; do
  kernel_packages="$kernel_packages $(depends_matching "$package" '^linux-modules(-extra)?-[0-9]')"
done
agent_libraries=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances --no-pre-depends qemu-guest-agent | awk '/^lib/ { print $1 }' | sort -u)
# shellcheck disable=SC2086
download $kernel_packages busybox-static qemu-guest-agent $agent_libraries
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done

# Kernel image and modules (merged-/usr systems keep them under /usr/lib).
modules_base=$work/root/lib/modules
[ -d "$modules_base" ] || modules_base=$work/root/usr/lib/modules
kernel_version=$(ls "$modules_base" | head -n1)
[ -n "$kernel_version" ] || die "no kernel modules in $kernel_packages"
vmlinuz=$(find "$work/root/boot" -name 'vmlinuz-*' 2>/dev/null | head -n1)
[ -n "$vmlinuz" ] || die "no vmlinuz in $kernel_packages"
mkdir -p "$work/kroot/lib/modules"
ln -s "$modules_base/$kernel_version" "$work/kroot/lib/modules/$kernel_version"
depmod -b "$work/kroot" "$kernel_version"
moddir=$modules_base/$kernel_version

# Load order from modules.dep: each module after the ones it depends on.
declare -A placed=()
load_order=()
place() {
  local path=$1 line dep
  [ -n "${placed[$path]:-}" ] && return
  line=$(grep -m1 "^$path:" "$moddir/modules.dep") || die "module $path is not in modules.dep"
  local deps=(${line#*:})
  local i
  for ((i = ${#deps[@]} - 1; i >= 0; i--)); do place "${deps[$i]}"; done
  placed[$path]=1
  load_order+=("$path")
}
for module in $wanted_modules; do
  pattern="/${module//_/[_-]}\\.ko(\\.(xz|zst|gz))?:"
  path=$(grep -E -m1 "$pattern" "$moddir/modules.dep" | cut -d: -f1 || true)
  if [ -n "$path" ]; then
    place "$path"
  elif grep -Eq "/${module//_/[_-]}\\.ko$" "$moddir/modules.builtin"; then
    say "module $module is built into the kernel"
  else
    die "kernel $kernel_version has no module $module"
  fi
done
mkdir -p "$work/initrd/lib/modules"
: > "$work/initrd/lib/modules/load.list"
for path in "${load_order[@]}"; do
  name=$(basename "$path")
  target=$work/initrd/lib/modules/${name%.*}
  case "$name" in
    *.ko.zst) zstd -q -d -c "$moddir/$path" > "$target" ;;
    *.ko.xz) xz -d -c "$moddir/$path" > "$target" ;;
    *.ko.gz) gzip -d -c "$moddir/$path" > "$target" ;;
    *) cp "$moddir/$path" "$work/initrd/lib/modules/$name"; target=$work/initrd/lib/modules/$name ;;
  esac
  basename "$target" >> "$work/initrd/lib/modules/load.list"
done

# busybox and its applets.
mkdir -p "$work/initrd/bin" "$work/initrd/sbin"
cp "$work/root/bin/busybox" "$work/initrd/bin/busybox"
for applet in $("$work/initrd/bin/busybox" --list); do
  [ -e "$work/initrd/bin/$applet" ] || ln -s busybox "$work/initrd/bin/$applet"
done

# The guest agent, its shared libraries (ELF NEEDED, transitively) and loader.
libdirs="$work/root/lib/x86_64-linux-gnu $work/root/usr/lib/x86_64-linux-gnu $work/root/lib64"
find_library() {
  local dir
  for dir in $libdirs; do [ -e "$dir/$1" ] && { echo "$dir/$1"; return; }; done
  die "library $1 needed by qemu-ga is in none of the downloaded packages"
}
mkdir -p "$work/initrd/lib/x86_64-linux-gnu" "$work/initrd/lib64"
agent=
for candidate in "$work"/root/usr/sbin/qemu-ga "$work"/root/usr/bin/qemu-ga; do
  [ -e "$candidate" ] && agent=$candidate && break
done
[ -n "$agent" ] || die "no qemu-ga in the qemu-guest-agent package"
cp "$agent" "$work/initrd/bin/qemu-ga"
queue=("$agent")
declare -A copied=()
while [ ${#queue[@]} -gt 0 ]; do
  elf=${queue[0]}
  queue=("${queue[@]:1}")
  for needed in $(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -n "${copied[$needed]:-}" ] && continue
    copied[$needed]=1
    library=$(find_library "$needed")
    cp -L "$library" "$work/initrd/lib/x86_64-linux-gnu/$needed"
    queue+=("$library")
  done
done
interpreter=$(readelf -l "$agent" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
mkdir -p "$work/initrd$(dirname "$interpreter")"
cp -L "$(find_library "$(basename "$interpreter")")" "$work/initrd$interpreter"

# Our own programs, linked into one static binary that runs the one it is
# called as (each alone is about 700 KB of static glibc), as busybox does.
tools="hyper-exec hyper-log hyper-relay hyper-reseed hyper-resume"
objects=()
for tool in $tools; do
  gcc -static -Os -c -Dmain="${tool//-/_}_main" -o "$work/$tool.o" "$here/$tool.c"
  objects+=("$work/$tool.o")
done
gcc -static -Os -s -o "$work/initrd/bin/hyper-tools" "$here/hyper-tools.c" "${objects[@]}"
for tool in $tools; do ln -s hyper-tools "$work/initrd/bin/$tool"; done
install -m 0755 "$here/init" "$work/initrd/init"
install -m 0755 "$here/shutdown" "$work/initrd/sbin/shutdown"
mkdir -p "$work/initrd"/{proc,sys,dev,run,tmp,etc,container}
echo 'root:x:0:0:root:/:/bin/sh' > "$work/initrd/etc/passwd"
echo 'root:x:0:' > "$work/initrd/etc/group"

(cd "$work/initrd" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -6 > "$work/initrd.img"
# The ELF inside the bzImage: QEMU loads its segments and enters it at its
# PVH entry point, so the guest neither decompresses nor relocates a kernel
# (about 0.5 s of a TCG boot). A kernel without a PVH entry (or a payload
# this cannot unpack) ships as the bzImage.
if extract_elf "$vmlinuz" "$work/vmlinux" && has_pvh_entry "$work/vmlinux"; then
  kernel_file=vmlinux
else
  say "no PVH entry in $(basename "$vmlinuz"); shipping the bzImage"
  cp "$vmlinuz" "$work/vmlinuz"
  kernel_file=vmlinuz
fi
# A host-side helper (see hyper-connect.c), static so it runs on any runner.
gcc -static -Os -s -o "$work/hyper-connect" "$here/hyper-connect.c"
mv "$work/initrd.img" "$work/$kernel_file" "$work/hyper-connect" "$out/"

package_versions=$(for deb in "$work"/debs/*.deb; do
  dpkg-deb -f "$deb" Package Version | paste -sd' ' | awk '{ printf "    \"%s\": \"%s\",\n", $2, $4 }'
done | sed '$ s/,$//')
cat > "$out/manifest.json" <<JSON
{
  "recipe": "${HYPER_GUEST_RECIPE_HASH:-unknown}",
  "kernelVersion": "$kernel_version",
  "kernelPackage": "$kernel_meta",
  "modules": [$(sed 's/.*/"&"/' "$work/initrd/lib/modules/load.list" | paste -sd, -)],
  "packages": {
$package_versions
  }
}
JSON
say "built $out (kernel $kernel_version, initrd $(du -h "$out/initrd.img" | cut -f1))"
