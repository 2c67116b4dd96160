import { qemuSandbox } from '../../tools/qemu/sandbox.js';
import { DEFAULT_TSC_KHZ } from '../../host/cpuinfo.js';
import type { MachineSpec } from '../hypervisor.js';
import { vmPaths } from '../paths.js';
import { sharePaths } from './virtiofs.js';
import { JAILED_CONNECT, type Jail, jailArgs } from './jail.js';

/** QEMU's option syntax treats ',' as a separator; a literal comma is written twice. */
export function optValue(value: string): string {
  return value.replace(/,/g, ',,');
}

/**
 * panic=-1 restarts at once on a panic, and -no-reboot turns the restart into
 * QEMU's exit. reboot=t restarts by triple fault: microvm has no keyboard
 * controller, and the kernel's default ACPI-then-keyboard path could spin
 * after a panic and leave the dead guest's QEMU running (seen under TCG).
 * cryptomgr.notests skips the kernel's crypto self-tests at boot: kernel start
 * to /init went from 1.22-1.43 s to 1.01-1.17 s under TCG here (3 boots each).
 */
export const KERNEL_CMDLINE = 'console=ttyS0 quiet panic=-1 reboot=t pci=off cryptomgr.notests';

/**
 * The guest CPU: QEMU's "max" under TCG; under KVM the named model the probe
 * chose, with `enforce` so that a host lacking any of its features refuses to
 * start the VM rather than hand the guest less than a template was made with;
 * else the host's own CPU. Pure.
 */
export function guestCpuArg(spec: Pick<MachineSpec, 'accel' | 'cpuModel'>): string {
  if (spec.accel !== 'kvm') return 'max';
  return spec.cpuModel ? `${spec.cpuModel},enforce` : 'host';
}

/**
 * Under TCG the guest kernel's TSC calibration against the emulated PIT fails
 * now and then, and the boot then hangs for good (2 of 8 boots in a trial
 * here); telling it the frequency skips that calibration (8 of 8 booted).
 * Under KVM the kernel reads it from kvm-clock and needs nothing.
 */
export function kernelCmdline(accel: MachineSpec['accel'], hostTscKhz: number | undefined): string {
  return accel === 'tcg'
    ? `${KERNEL_CMDLINE} tsc_early_khz=${hostTscKhz ?? DEFAULT_TSC_KHZ}`
    : KERNEL_CMDLINE;
}

/** Block node names, for QMP snapshot commands: the root disk's, and each further disk's. */
export const ROOT_NODE = 'root-disk';
export function diskNode(serial: string): string {
  return `${serial}-disk`;
}

/**
 * The most TCG's translation cache takes, in MiB (QEMU's default is 1 GiB):
 * a bound the VM's cgroup can count on. A busybox VM used 57 MiB of it, and
 * 64 made no difference to its boot (docs/benchmarks.md).
 */
export const TCG_CACHE_MIB = 256;

/** Whether QEMU starts processes: user networking's helper, one per connection between services. Pure. */
export function spawnsHelpers(spec: MachineSpec, launch: Launch): boolean {
  const network = spec.network ?? { kind: 'user', guestForwards: [] };
  return (
    (launch.kind === 'boot' || launch.kind === 'clone') &&
    network.kind === 'user' &&
    network.guestForwards.length > 0
  );
}

/**
 * The network device. User networking forwards published ports (hostfwd) and,
 * for each other service, the address and port the guest dials to a helper
 * that connects to that service's loopback port (guestfwd); `restrict` drops
 * everything else. A TAP joins the job's bridge. Pure.
 */
export function networkArgs(spec: MachineSpec, jail?: Jail): string[] {
  const network = spec.network ?? { kind: 'user', restrict: false, guestForwards: [], connect: '' };
  if (network.kind === 'tap') {
    return [
      '-netdev',
      `tap,id=net0,ifname=${optValue(network.ifname)},script=no,downscript=no`,
      '-device',
      `virtio-net-device,netdev=net0,mac=${network.mac}`,
    ];
  }
  const hostfwd = spec.ports.map((p) => `,hostfwd=${p.protocol}:${p.hostIp}:${p.hostPort}-:${p.guestPort}`);
  // A chrooted QEMU runs the helper linked into its jail (vmJail).
  const connect = jail?.ids ? `/${JAILED_CONNECT}` : network.connect;
  const guestfwd = network.guestForwards.map(
    (f) => `,guestfwd=tcp:${f.address}:${f.port}-cmd:${optValue(connect)} 127.0.0.1 ${f.hostPort}`,
  );
  const restrict = network.restrict ? ',restrict=on' : '';
  return [
    '-netdev',
    `user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3${restrict}${hostfwd.join('')}${guestfwd.join('')}`,
    '-device',
    'virtio-net-device,netdev=net0',
  ];
}

/**
 * Extra virtio-blk slots in the fixed device layout that boot templates and
 * their clones share (volumes, host-path copies, archives copied in). A clone
 * must have the very devices its template was saved with, so a VM fills what
 * it uses and the rest hold empty placeholders. microvm has 24 virtio-mmio
 * transports; root disk, slots, ports and NIC take 9.
 */
export const DISK_SLOTS = 6;

/** The MAC a template's NIC is saved with: QEMU's default, which user-mode clones keep. */
export const TEMPLATE_MAC = '52:54:00:12:34:56';

/** The fw_cfg entry that tells the guest init to wait as a boot template (guest/init). */
export const TEMPLATE_MARKER = 'opt/hyper/template';

/**
 * The fw_cfg entry that tells the init of a VM booted in full that it has
 * the hyper.control port, to start its reader there (guest/hyper-resume.c):
 * a checkpoint of it resumes through that port.
 */
export const CONTROL_MARKER = 'opt/hyper/control';

/** The descriptor of hyper's control connection in QEMU (hasControlPort): after the incoming state's. */
export const CONTROL_FD = 4;

/**
 * Whether QEMU gets a control connection (CONTROL_FD) on its hyper.control
 * port: a template, which waits on it, and a VM resumed from saved state,
 * which takes its settings (a clone of a boot template) or its clock,
 * entropy and network (a checkpoint, a service template) through it. A
 * booted VM's port has no backend until a checkpoint of it is resumed. Pure.
 */
export function hasControlPort(spec: Pick<MachineSpec, 'slots'>, launch: Launch): boolean {
  return spec.slots !== undefined && (launch.kind === 'template' || launch.kind === 'clone');
}

/**
 * How QEMU is started for a VM:
 * - `boot`: the kernel boots;
 * - `template`: a boot template is made: RAM in the shared file `ram`, empty
 *   disk slots, a NIC with no backend, and the init told to wait;
 * - `clone`: the VM resumes from saved state, a boot template's or a
 *   checkpoint's. Its RAM maps that file privately (copy-on-write), and QEMU
 *   waits for the device state (`-incoming defer`) to be fed through QMP.
 *   With `readOnlyOpen` (QEMU 8.2 and later) QEMU opens the file read-only
 *   (`readonly=on,rom=off`: the guest still writes its private copy), so a
 *   QEMU a guest takes over cannot write what later clones start from; 7.2
 *   opens it read-write whatever the mapping;
 * - `capture`: the machine a checkpoint is taken through. It has the VM's
 *   devices with empty disks and RAM in the shared file `ram`, never runs
 *   (`-S`), and waits for the VM to migrate into it; it then saves its device
 *   state beside that file, as a template does.
 */
export type Launch =
  | { kind: 'boot' }
  | { kind: 'template'; ram: string }
  | { kind: 'clone'; ram: string; readOnlyOpen?: boolean }
  | { kind: 'capture'; ram: string };

/** Whether a VM can be a clone: no live shares (vhost-user devices cannot migrate) and disks that fit the slots. Pure. */
export function fitsSlots(spec: Pick<MachineSpec, 'shares' | 'disks'>): boolean {
  return !spec.shares?.length && (spec.disks?.length ?? 0) <= DISK_SLOTS;
}

/**
 * Disk files hyper opens itself and hands QEMU (`-add-fd`), by path: the
 * fd set's id and the descriptors in the child, one read-only and, for a
 * writable disk, one read-write. QEMU takes the one whose access mode it
 * needs whenever it (re)opens the disk, as it does when a VM that loaded
 * its state starts running, by then inside its jail where no path is.
 */
export type DiskFds = ReadonlyMap<string, { set: number; fds: readonly number[] }>;

/**
 * The file= value of a disk: its fd set when it has one, else its path.
 * QEMU's image locks (OFD locks) are off for a handed disk: they belong to
 * the open file, which the fd set keeps open, so a lock taken through one
 * descriptor would outlive QEMU's switch to the other (after a migration
 * out, `cont` failed with 'Failed to get "write" lock'). hyper never lets
 * two QEMUs open one VM's disks. Pure.
 */
function diskFile(file: string, fds: DiskFds | undefined): string {
  const handed = fds?.get(file);
  return handed ? `/dev/fdset/${handed.set},file.locking=off` : optValue(file);
}

/** The -add-fd options for `fds`. Pure. */
export function addFdArgs(fds: DiskFds | undefined): string[] {
  return [...(fds?.values() ?? [])].flatMap(({ set, fds: handed }) =>
    handed.flatMap((fd) => ['-add-fd', `fd=${fd},set=${set}`]),
  );
}

function diskArgs(disk: NonNullable<MachineSpec['disks']>[number], fds: DiskFds | undefined): string[] {
  const mode = disk.readOnly ? ',read-only=on' : ',discard=unmap';
  return [
    '-drive',
    `id=${disk.serial},node-name=${diskNode(disk.serial)},file=${diskFile(disk.path, fds)},format=${disk.format ?? 'qcow2'},if=none${mode}`,
    '-device',
    `virtio-blk-device,drive=${disk.serial},serial=${disk.serial}`,
  ];
}

/** An empty disk slot: a null block device of no size, which the guest sees and ignores. */
function placeholderArgs(id: string): string[] {
  return [
    '-blockdev',
    `driver=null-co,node-name=${id},size=0,read-only=on`,
    '-device',
    `virtio-blk-device,drive=${id},serial=${id}`,
  ];
}

function memoryArgs(spec: MachineSpec, launch: Launch): string[] {
  const size = `size=${spec.memoryMiB}M`;
  if (spec.shares?.length) return ['-object', `memory-backend-memfd,id=ram,${size},share=on`];
  if (launch.kind === 'template' || launch.kind === 'capture')
    return ['-object', `memory-backend-file,id=ram,${size},mem-path=${optValue(launch.ram)},share=on`];
  if (launch.kind === 'clone') {
    const readOnly = launch.readOnlyOpen ? ',readonly=on,rom=off' : '';
    return [
      '-object',
      `memory-backend-file,id=ram,${size},mem-path=${optValue(launch.ram)},share=off${readOnly}`,
    ];
  }
  return spec.slots === undefined ? [] : ['-object', `memory-backend-ram,id=ram,${size}`];
}

/**
 * A balloon that is never inflated, there for free-page reporting: the
 * guest hands back the memory it frees (2 MiB blocks), and QEMU discards it,
 * so a VM's own memory follows what its guest uses rather than the most it
 * ever touched. Only on VMs that are no template, clone, checkpoint or
 * capture machine (those without `slots`): QEMU discards file-backed RAM by
 * punching a hole in the file, which in a template's or checkpoint's RAM
 * file would zero pages every other clone of it still reads.
 */
export function freePageReportingArgs(): string[] {
  return ['-device', 'virtio-balloon-device,free-page-reporting=on'];
}

/**
 * The full argv (without the program) for one microVM. Pure: same spec, same argv.
 *
 * A VM with `slots` has the device layout of a boot template, in the
 * template's order, whether it is a clone or booted in full. A checkpoint
 * taken on one then loads on the other.
 */
export function qemuArgs(
  spec: MachineSpec,
  hostTscKhz?: number,
  launch: Launch = { kind: 'boot' },
  jail?: Jail,
  fds?: DiskFds,
): string[] {
  const paths = vmPaths(spec.dir);
  // A capture machine holds no disk of the VM's: only their devices, whose state migrates.
  const template = launch.kind === 'template' || launch.kind === 'capture';
  const slots = spec.slots;
  const memory = memoryArgs(spec, launch);
  // prettier-ignore
  const args = [
    '-name', optValue(spec.name),
    // Shared host directories need the guest's RAM shared with virtiofsd; templates and clones need it in a file.
    '-M', `microvm,x-option-roms=off,rtc=on${memory.length ? ',memory-backend=ram' : ''}`,
    '-accel', spec.accel === 'kvm' ? 'kvm' : `tcg,thread=multi,tb-size=${TCG_CACHE_MIB}`,
    '-cpu', guestCpuArg(spec),
    '-m', `${spec.memoryMiB}M`,
    '-smp', String(spec.cpus),
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    ...(jail?.off ? [] : qemuSandbox({ dropsPrivileges: jail?.ids !== undefined, spawns: spawnsHelpers(spec, launch) })),
    ...jailArgs(jail),
    '-global', 'virtio-mmio.force-legacy=false',
    '-kernel', spec.bundle.kernel,
    '-initrd', spec.bundle.initrd,
    '-append', kernelCmdline(spec.accel, hostTscKhz),
    '-serial', `file:${paths.console}`,
    '-pidfile', paths.pid,
    '-qmp', `unix:${optValue(paths.qmp)},server=on,wait=off`,
    ...memory,
    ...addFdArgs(fds),
  ];
  if (template) args.push(...placeholderArgs('root'));
  else
    args.push(
      '-drive',
      `id=root,node-name=${ROOT_NODE},file=${diskFile(spec.rootDisk, fds)},format=qcow2,if=none,discard=unmap`,
      '-device',
      'virtio-blk-device,drive=root,serial=rootfs',
    );
  if (slots !== undefined) {
    const disks = template ? [] : (spec.disks ?? []);
    for (const disk of disks) args.push(...diskArgs(disk, fds));
    for (let index = disks.length; index < slots; index++) args.push(...placeholderArgs(`slot${index}`));
  }
  // prettier-ignore
  args.push(
    '-device', 'virtio-serial-device',
    // append: a restarted VM keeps the log, and the status the host wrote for it.
    '-chardev', `file,id=log,path=${optValue(paths.serviceLog)},append=on`,
    '-device', 'virtserialport,chardev=log,name=hyper.log',
    '-chardev', `file,id=status,path=${optValue(paths.status)},append=on`,
    '-device', 'virtserialport,chardev=status,name=hyper.status',
    '-chardev', `socket,id=qga,path=${optValue(paths.agent)},server=on,wait=off`,
    '-device', 'virtserialport,chardev=qga,name=org.qemu.guest_agent.0',
  );
  // Where a template waits and a clone takes its settings (guest/hyper-resume.c): hyper's end of a
  // socket pair handed to QEMU, connected from QEMU's start, so the guest's read blocks until it writes.
  if (slots !== undefined)
    args.push(
      '-chardev',
      hasControlPort(spec, launch) ? `socket,id=control,fd=${CONTROL_FD}` : 'null,id=control',
      '-device',
      'virtserialport,chardev=control,name=hyper.control',
    );
  // A template has every port a clone may use.
  if (slots !== undefined || spec.relaySockets?.length)
    args.push(
      '-chardev',
      `socket,id=relay,path=${optValue(paths.relay)},server=on,wait=off`,
      '-device',
      'virtserialport,chardev=relay,name=hyper.relay',
    );
  // The template's NIC has no backend: a user-mode one would save its state, which a TAP clone could not load.
  if (launch.kind === 'template') args.push('-device', `virtio-net-device,mac=${TEMPLATE_MAC}`);
  else if (launch.kind === 'capture') args.push(...captureNetworkArgs(spec));
  else args.push(...networkArgs(spec, jail));
  if (slots === undefined) for (const disk of spec.disks ?? []) args.push(...diskArgs(disk, fds));
  for (const [index, share] of (spec.shares ?? []).entries()) {
    args.push(
      '-chardev',
      `socket,id=fs${index},path=${optValue(sharePaths(spec.dir, index).socket)}`,
      '-device',
      `vhost-user-fs-device,chardev=fs${index},tag=${share.tag},queue-size=1024`,
    );
  }
  if (launch.kind === 'boot' && slots === undefined) args.push(...freePageReportingArgs());
  // A clone's settings come on its control port (hasControlPort); fw_cfg is read once, at boot.
  if (launch.kind !== 'boot') args.push('-fw_cfg', `name=${TEMPLATE_MARKER},string=1`);
  else {
    if (slots !== undefined) args.push('-fw_cfg', `name=${CONTROL_MARKER},string=1`);
    for (const file of spec.guestFiles) {
      args.push('-fw_cfg', `name=opt/hyper/${file.name},file=${optValue(file.path)}`);
    }
  }
  if (launch.kind === 'clone') args.push('-incoming', 'defer');
  if (launch.kind === 'capture') args.push('-S', '-incoming', 'defer');
  return args;
}

/**
 * The capture machine's NIC has a backend of the VM's kind, with nothing
 * behind it, so that the VM's device state loads: a user-mode VM's carries
 * its slirp state, and a TAP VM's guest uses the offloads that only a TAP
 * with a vnet header offers. The TAP is QEMU's own (no ifname): the kernel
 * makes it, down and on no bridge, and removes it when QEMU exits. Pure.
 */
export function captureNetworkArgs(spec: MachineSpec): string[] {
  const backend =
    spec.network?.kind === 'tap' ? 'tap,id=net0,script=no,downscript=no' : 'user,id=net0,restrict=on';
  return ['-netdev', backend, '-device', 'virtio-net-device,netdev=net0'];
}
