import { DEFAULT_TSC_KHZ } from '../../host/cpuinfo.js';
import type { MachineSpec } from '../hypervisor.js';
import { vmPaths } from '../paths.js';
import { sharePaths } from './virtiofs.js';

/** QEMU's option syntax treats ',' as a separator; a literal comma is written twice. */
export function optValue(value: string): string {
  return value.replace(/,/g, ',,');
}

/**
 * panic=-1 restarts at once on a panic, and -no-reboot turns the restart into
 * QEMU's exit. reboot=t restarts by triple fault: microvm has no keyboard
 * controller, and the kernel's default ACPI-then-keyboard path could spin
 * after a panic and leave the dead guest's QEMU running (seen under TCG).
 */
export const KERNEL_CMDLINE = 'console=ttyS0 quiet panic=-1 reboot=t pci=off';

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
 * The network device. User networking forwards published ports (hostfwd) and,
 * for each other service, the address and port the guest dials to a helper
 * that connects to that service's loopback port (guestfwd); `restrict` drops
 * everything else. A TAP joins the job's bridge. Pure.
 */
export function networkArgs(spec: MachineSpec): string[] {
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
  const guestfwd = network.guestForwards.map(
    (f) => `,guestfwd=tcp:${f.address}:${f.port}-cmd:${optValue(network.connect)} 127.0.0.1 ${f.hostPort}`,
  );
  const restrict = network.restrict ? ',restrict=on' : '';
  return [
    '-netdev',
    `user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3${restrict}${hostfwd.join('')}${guestfwd.join('')}`,
    '-device',
    'virtio-net-device,netdev=net0',
  ];
}

/** The full argv (without the program) for one microVM. Pure: same spec, same argv. */
export function qemuArgs(spec: MachineSpec, hostTscKhz?: number): string[] {
  const paths = vmPaths(spec.dir);
  // prettier-ignore
  const args = [
    '-name', optValue(spec.name),
    // Shared host directories need the guest's RAM shared with virtiofsd.
    '-M', `microvm,x-option-roms=off,rtc=on${spec.shares?.length ? ',memory-backend=ram' : ''}`,
    '-accel', spec.accel === 'kvm' ? 'kvm' : 'tcg,thread=multi',
    '-cpu', spec.accel === 'kvm' ? 'host' : 'max',
    '-m', `${spec.memoryMiB}M`,
    '-smp', String(spec.cpus),
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-global', 'virtio-mmio.force-legacy=false',
    '-kernel', spec.bundle.kernel,
    '-initrd', spec.bundle.initrd,
    '-append', kernelCmdline(spec.accel, hostTscKhz),
    '-serial', `file:${paths.console}`,
    '-pidfile', paths.pid,
    '-qmp', `unix:${optValue(paths.qmp)},server=on,wait=off`,
    '-drive', `id=root,node-name=${ROOT_NODE},file=${optValue(spec.rootDisk)},format=qcow2,if=none,discard=unmap`,
    '-device', 'virtio-blk-device,drive=root,serial=rootfs',
    '-device', 'virtio-serial-device',
    // append: a restarted VM keeps the log, and the status the host wrote for it.
    '-chardev', `file,id=log,path=${optValue(paths.serviceLog)},append=on`,
    '-device', 'virtserialport,chardev=log,name=hyper.log',
    '-chardev', `file,id=status,path=${optValue(paths.status)},append=on`,
    '-device', 'virtserialport,chardev=status,name=hyper.status',
    '-chardev', `socket,id=qga,path=${optValue(paths.agent)},server=on,wait=off`,
    '-device', 'virtserialport,chardev=qga,name=org.qemu.guest_agent.0',
    ...networkArgs(spec),
  ];
  if (spec.relaySockets?.length)
    args.push(
      '-chardev',
      `socket,id=relay,path=${optValue(paths.relay)},server=on,wait=off`,
      '-device',
      'virtserialport,chardev=relay,name=hyper.relay',
    );
  for (const disk of spec.disks ?? []) {
    const mode = disk.readOnly ? ',read-only=on' : ',discard=unmap';
    args.push(
      '-drive',
      `id=${disk.serial},node-name=${diskNode(disk.serial)},file=${optValue(disk.path)},format=${disk.format ?? 'qcow2'},if=none${mode}`,
      '-device',
      `virtio-blk-device,drive=${disk.serial},serial=${disk.serial}`,
    );
  }
  if (spec.shares?.length)
    args.push('-object', `memory-backend-memfd,id=ram,size=${spec.memoryMiB}M,share=on`);
  for (const [index, share] of (spec.shares ?? []).entries()) {
    args.push(
      '-chardev',
      `socket,id=fs${index},path=${optValue(sharePaths(spec.dir, index).socket)}`,
      '-device',
      `vhost-user-fs-device,chardev=fs${index},tag=${share.tag},queue-size=1024`,
    );
  }
  for (const file of spec.guestFiles) {
    args.push('-fw_cfg', `name=opt/hyper/${file.name},file=${optValue(file.path)}`);
  }
  return args;
}
