// What a hypervisor must do for one VM. QEMU implements it; Firecracker and Cloud Hypervisor can later.
import type { Duplex } from 'node:stream';
import type { GuestBundle } from '../types/guest-bundle.js';
import type { Accel } from '../install/accel.js';
import type { GuestNetwork } from '../guest/config.js';

// Re-exported so the engine names everything a VM is made of from one module.
export type { Accel, GuestBundle };

export interface PortForward {
  protocol: 'tcp' | 'udp';
  hostIp: string;
  hostPort: number;
  guestPort: number;
}

/** A file handed to the guest through fw_cfg (name under opt/hyper/). */
export interface GuestFile {
  name: string;
  path: string;
}

export interface MachineSpec {
  name: string;
  /** Per-VM state directory: sockets, logs and disks live here. */
  dir: string;
  accel: Accel;
  /** Under KVM, the named CPU model the guest gets (QEMU enforces its features); absent: "-cpu host". */
  cpuModel?: string;
  memoryMiB: number;
  cpus: number;
  bundle: GuestBundle;
  /** qcow2 overlay whose backing file is the image's read-only ext4 base. */
  rootDisk: string;
  guestFiles: GuestFile[];
  /** Host ports QEMU forwards into the guest (user networking). */
  ports: PortForward[];
  /** How the VM is connected; plain user networking when absent (records from before job networks). */
  network?: MachineNetwork;
  /** Further disks (volumes, host-path copies); the guest finds each by its serial. */
  disks?: DiskSpec[];
  /** Host directories shared live with the guest (virtiofs); the guest finds each by its tag. */
  shares?: ShareSpec[];
  /**
   * Paths in the guest's container where a Unix socket is served whose
   * connections reach the host (guest/hyper-relay.c): the Docker API socket
   * bound into a container. The host joins them with relayStreams.
   */
  relaySockets?: string[];
  /**
   * The VM has the device layout of a boot template with this many extra
   * disk slots, so it can start as a clone of one (src/vm/qemu/template.ts).
   * Absent on VMs that cannot (live shares, more disks than slots) and on
   * records made before templates.
   */
  slots?: number;
  /**
   * The guest's init keeps hyper-resume reading the hyper.control port for
   * the VM's life (guest/hyper-resume.c), so that, resumed from saved state,
   * it takes its clock, entropy and network there. Absent on records made by
   * an earlier hyper-services, whose guests take them through the agent.
   */
  controlReader?: boolean;
}

/** A host directory the guest mounts live, both ways (bind mounts), served by a virtiofsd of its own. */
export interface ShareSpec {
  /** The virtiofs tag the guest mounts it by. */
  tag: string;
  source: string;
  /** Served read-only: virtiofsd sees it through a read-only bind mount of its own. */
  readOnly: boolean;
}

/** How QEMU connects one VM to its job's network (src/network/job.ts decides). */
export type MachineNetwork =
  | {
      kind: 'user';
      /** No traffic leaves QEMU but forwarded ports (egress deny). */
      restrict: boolean;
      /** Connections to other services: the address and port the guest dials, and the loopback port they reach. */
      guestForwards: { address: string; port: number; hostPort: number }[];
      /** The helper QEMU runs for each such connection (guest/hyper-connect.c). */
      connect: string;
    }
  | {
      kind: 'tap';
      ifname: string;
      mac: string;
      /** The network namespace the TAP is in (a /run/netns file), which QEMU enters; absent: the host's. */
      netns?: string;
    };

export interface DiskSpec {
  /** Also the block device id; at most 20 characters (virtio-blk's serial). */
  serial: string;
  /** A qcow2 image, or a raw one (a tar the guest reads as a device) when `format` says so. */
  path: string;
  readOnly: boolean;
  format?: 'qcow2' | 'raw';
}

export interface ExecResult {
  exitCode: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** A command running in the guest, its output as it comes. */
export interface ExecStream {
  stdout: AsyncIterable<Buffer>;
  stderr: AsyncIterable<Buffer>;
  /** The exit code (128 + signal when a signal ended it), once the output has all been read. */
  exitCode: Promise<number>;
}

/**
 * Whether a VM starts as a clone of a boot template: `auto` when one can be
 * (made first when there is none), `off` never, `refresh` with a new
 * template made first.
 */
export type TemplateMode = 'auto' | 'off' | 'refresh';

export const TEMPLATE_MODES: readonly TemplateMode[] = ['auto', 'off', 'refresh'];

export interface StartOptions {
  /** Resume from this checkpoint (a whole-VM snapshot) instead of booting. */
  checkpoint?: string;
  /**
   * Resume from this saved RAM and device state (a service template's),
   * whose disks the VM's already are: nothing is reverted.
   */
  saved?: { ram: string; state: string };
  /**
   * With `checkpoint` or `saved`: the network the guest is to have, applied
   * once it runs again (the saved one may be another job's).
   */
  network?: GuestNetwork;
  /** Ignored with a checkpoint; `auto` when absent. */
  template?: TemplateMode;
  /** Where each step of the start is told (a template made, a damaged one refused). */
  log?: (line: string) => void;
}

/** How a VM came up: booted in full, cloned from a boot template or a service template, or loaded from a checkpoint. */
export type StartOrigin = 'boot' | 'boot-template' | 'service-template' | 'checkpoint';

export interface Started {
  pid: number;
  origin: StartOrigin;
}

export interface Hypervisor {
  /**
   * The disk slots (MachineSpec.slots) a VM with these devices is made with
   * so that it can start as a clone of a boot template; undefined when it
   * cannot be one. Fixed when the VM is made: a checkpoint loads only into
   * the layout it was taken in.
   */
  templateSlots(spec: Pick<MachineSpec, 'shares' | 'disks'>): number | undefined;
  /** Whether host directories can be shared live with guests here (MachineSpec.shares). */
  canShareDirectories(): Promise<boolean>;
  /**
   * Starts the VM as a detached process and returns its pid once the process
   * is up (a clone: once it has its settings).
   */
  start(spec: MachineSpec, options?: StartOptions): Promise<Started>;
  /** Waits until the guest has started the service (which may have run to its end since); throws with the console tail if it never started. */
  waitUntilRunning(spec: MachineSpec, timeoutMs: number): Promise<void>;
  exec(spec: MachineSpec, argv: string[], timeoutMs: number): Promise<ExecResult>;
  /** Runs a command with its output streamed as it comes and, when given, `stdin` fed to it. */
  execStream(
    spec: MachineSpec,
    argv: string[],
    options: {
      stdin?: AsyncIterable<Buffer> | undefined;
      timeoutMs: number;
      signal?: AbortSignal | undefined;
    },
  ): Promise<ExecStream>;
  /**
   * Joins each connection made in the guest to one of its relaySockets to a
   * fresh `connect()` on the host, until `signal` aborts (a VM that restarts
   * is served again).
   */
  relayStreams(spec: MachineSpec, connect: () => Duplex, signal: AbortSignal): Promise<void>;
  /**
   * Asks the guest to stop its service; resolves once the VM process has gone
   * or the grace time ran out. With no grace it kills at once, asking nothing.
   */
  stop(spec: MachineSpec, graceMs: number): Promise<'graceful' | 'killed'>;
  /** Only the VM's directory is needed: a VM whose record is damaged can still be killed. */
  kill(spec: Pick<MachineSpec, 'dir'>): Promise<void>;
  isRunning(spec: MachineSpec): Promise<boolean>;
  /**
   * A consistent snapshot `tag` of the disks with these serials while the VM
   * runs: the guest's filesystems at `mountpoints` are frozen through the guest
   * agent, all disks are snapshotted at once, then thawed, whatever happened.
   */
  snapshotDisks(
    spec: MachineSpec,
    serials: readonly string[],
    tag: string,
    freeze: { mountpoints: readonly string[]; timeoutMs: number },
  ): Promise<void>;
  /**
   * Saves RAM, devices and every writable disk as checkpoint `tag`; the VM
   * keeps running. A stopped VM resumes from one with `start`'s `checkpoint`.
   */
  saveCheckpoint(spec: MachineSpec, tag: string): Promise<void>;
  /** Deletes snapshot `tag` from these disks (serials; "rootfs" is the root disk), and a checkpoint's RAM, running or not. */
  deleteSnapshot(spec: MachineSpec, serials: readonly string[], tag: string): Promise<void>;
  /** Stops the guest's CPUs and flushes every disk, so the disk files can be copied; `resume` undoes it. */
  pause(spec: MachineSpec): Promise<void>;
  resume(spec: MachineSpec): Promise<void>;
  /** Reverts these disks of a stopped VM to snapshot `tag`. */
  revertDisks(spec: MachineSpec, serials: readonly string[], tag: string): Promise<void>;
}
