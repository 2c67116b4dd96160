// Starting a QEMU: in its VM's cgroups, with the descriptors hyper opened for
// it, and moving a machine's saved state in and out without QEMU spawning
// anything or opening a path (see jail.ts).
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { type FileHandle, lchown, open, rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { finished } from 'node:stream/promises';
import type { CgroupLimits } from '../../host/cgroups.js';
import type { Accel, MachineSpec } from '../hypervisor.js';
import { type Jail, pathInJail, shortAlias } from './jail.js';
import type { QmpClient } from './qmp.js';
import { CONTROL_FD, type DiskFds, type Launch, TCG_CACHE_MIB } from './args.js';

/** The descriptor a machine reads its incoming state from: `migrate-incoming fd:3`. */
export const INCOMING_FD = 3;

/** hyper's end of the control connection of a QEMU spawned with `control`; it holds no event loop open. */
export function controlSocket(child: ChildProcess): net.Socket {
  const socket = child.stdio?.[CONTROL_FD];
  if (!(socket instanceof net.Socket)) throw new Error('QEMU was spawned without a control connection');
  socket.unref();
  return socket;
}

/**
 * The network namespace a QEMU runs in, when not the host's: a file of one
 * (`/run/netns/NAME`, a bridge VM's, holding its TAP) that it enters, or
 * `empty`: one of its own with nothing in it but a loopback that is down,
 * gone when QEMU ends. Either way QEMU reaches no host address.
 */
export type QemuNetns = { enter: string } | 'empty';

/**
 * Where a QEMU's network lives. A bridge VM's QEMU enters the namespace its
 * TAP is in (the network's driver made it there, as root). A jailed boot
 * template's and capture machine's, whose NIC reaches nothing, get an empty
 * one when hyper is root and may make one (CAP_SYS_ADMIN). A user-mode VM's stays in
 * the host's: slirp listens on the host's loopback for published ports and
 * connects there for guestfwd. Pure.
 */
export function qemuNetns(
  spec: Pick<MachineSpec, 'network'>,
  launch: Launch,
  jail: Jail | undefined,
): QemuNetns | undefined {
  if (launch.kind === 'template' || launch.kind === 'capture')
    return jail?.ids && jail.netns ? 'empty' : undefined;
  const network = spec.network;
  return network?.kind === 'tap' && network.netns !== undefined ? { enter: network.netns } : undefined;
}

/**
 * The command that starts QEMU inside cgroups `procs`: a shell writes its
 * own pid to each cgroup.procs, then becomes QEMU (same pid), so every page
 * and thread QEMU ever has is counted there. With `netns`, util-linux's
 * nsenter or unshare puts it in that network namespace first (root only). Pure.
 */
export function qemuCommand(
  qemu: string,
  args: readonly string[],
  procs: readonly string[],
  netns?: QemuNetns,
): { program: string; args: string[] } {
  const inner =
    procs.length === 0 ? [qemu, ...args] : ['sh', '-c', JOIN_CGROUPS, 'sh', ...procs, '--', qemu, ...args];
  const outer =
    netns === undefined
      ? []
      : netns === 'empty'
        ? ['unshare', '--net', '--']
        : ['nsenter', `--net=${netns.enter}`, '--'];
  const [program = qemu, ...rest] = [...outer, ...inner];
  return { program, args: rest };
}

const JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"';

/** The first descriptor of the disks hyper hands QEMU (after INCOMING_FD and CONTROL_FD). */
const FIRST_DISK_FD = CONTROL_FD + 1;

/**
 * Starts QEMU with its output to `output`, `incoming` (a descriptor of this
 * process) as INCOMING_FD, and the disks' descriptors where `disks` says.
 */
export function spawnQemu(
  qemu: string,
  args: readonly string[],
  options: {
    output: number;
    procs: readonly string[];
    incoming?: number;
    disks?: OpenDisks;
    detached?: boolean;
    netns?: QemuNetns | undefined;
    /** A socket pair for the hyper.control port, QEMU's end at CONTROL_FD (hasControlPort). */
    control?: boolean;
  },
): ChildProcess {
  const command = qemuCommand(qemu, args, options.procs, options.netns);
  const stdio: (number | 'ignore' | 'pipe')[] = [
    'ignore',
    options.output,
    options.output,
    options.incoming ?? 'ignore',
    options.control ? 'pipe' : 'ignore',
  ];
  for (const handle of options.disks?.handles ?? []) stdio.push(handle.fd);
  return spawn(command.program, command.args, { stdio, detached: options.detached ?? false });
}

/** The disks of a VM, opened by hyper: their fd sets for qemuArgs, and the open files (closed once QEMU has them). */
export interface OpenDisks {
  fds: DiskFds;
  handles: FileHandle[];
  close: () => Promise<void>;
}

/**
 * Opens the VM's root disk and further disks, read-only and (when writable)
 * read-write, numbering them as QEMU will find them (FIRST_DISK_FD on).
 */
export async function openDisks(spec: Pick<MachineSpec, 'rootDisk' | 'disks'>): Promise<OpenDisks> {
  const handles: FileHandle[] = [];
  const fds = new Map<string, { set: number; fds: number[] }>();
  const close = async (): Promise<void> => {
    await Promise.all(handles.map((handle) => handle.close().catch(() => undefined)));
  };
  try {
    const disks = [{ path: spec.rootDisk, readOnly: false }, ...(spec.disks ?? [])];
    for (const disk of disks) {
      if (fds.has(disk.path)) continue;
      const set = { set: fds.size + 1, fds: [] as number[] };
      for (const flags of disk.readOnly ? ['r'] : ['r', 'r+']) {
        handles.push(await open(disk.path, flags));
        set.fds.push(FIRST_DISK_FD + handles.length - 1);
      }
      fds.set(disk.path, set);
    }
  } catch (error: unknown) {
    await close();
    throw error;
  }
  return { fds, handles, close };
}

/**
 * What a machine's QEMU may take on the host: the guest's RAM, TCG's
 * translation cache at its bound, and what QEMU itself uses (about 60 MiB
 * seen for an idle busybox VM: docs/benchmarks.md), with room; pids for its
 * threads and the helpers user networking starts (one per connection
 * between services); a CPU weight by vCPUs. Pure.
 */
export function machineLimits(spec: { memoryMiB: number; cpus: number; accel: Accel }): CgroupLimits {
  const overheadMiB = QEMU_OWN_MIB + (spec.accel === 'kvm' ? 0 : TCG_CACHE_MIB);
  return {
    memoryBytes: (spec.memoryMiB + overheadMiB) * 1024 * 1024,
    pids: MACHINE_PIDS,
    cpuWeight: Math.min(10_000, 100 * spec.cpus),
  };
}

/** QEMU's own memory beside the guest's RAM and TCG's cache, with room for its I/O buffers. */
export const QEMU_OWN_MIB = 192;
/** QEMU's threads (vCPUs, I/O workers: at most 64) and user networking's helpers. */
export const MACHINE_PIDS = 512;

/** The cgroup name of the machine whose files are in `dir`. Pure. */
export function cgroupName(kind: 'vm' | 'template' | 'capture', dir: string): string {
  return `${kind}-${createHash('sha256').update(dir).digest('hex').slice(0, 16)}`;
}

/**
 * Saves the state of the machine on `qmp` (a migration) to `file`: QEMU
 * connects to a socket hyper serves in its jail, and hyper writes what comes.
 */
export async function saveState(
  qmp: QmpClient,
  jail: Jail,
  file: string,
  wait: (qmp: QmpClient) => Promise<void>,
): Promise<void> {
  const socket = path.join(jail.dir, 'save.sock');
  await rm(socket, { force: true });
  const alias = await shortAlias(jail.dir);
  const server = net.createServer();
  const out = createWriteStream(file, { mode: 0o600 });
  let taken: net.Socket | undefined;
  const written = new Promise<void>((resolve, reject) => {
    server.once('connection', (connection) => {
      taken = connection;
      server.close();
      connection.pipe(out);
      connection.once('error', reject);
      finished(out).then(resolve, reject);
    });
  });
  written.catch(() => undefined);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path.join(alias.path, 'save.sock'), resolve);
    });
    // lchown: never through a link (the jail is sticky and root's, so QEMU cannot put one there anyway).
    if (jail.ids) await lchown(socket, jail.ids.uid, jail.ids.gid);
    await qmp.execute('migrate', { uri: `unix:${pathInJail(jail, alias.path, 'save.sock')}` });
    await wait(qmp);
    await written;
  } finally {
    server.close();
    taken?.destroy();
    out.destroy();
    await alias.remove();
    await rm(socket, { force: true });
  }
}
