import { readFile } from 'node:fs/promises';
import { exists, readStateFile, writeFileAtomic } from '../files.js';
import path from 'node:path';
import { knownQemuVersion } from '../tools/qemu/version.js';
import { CONTAINER_ROOT } from '../guest/config.js';
import { cpuIdentity, readCpuInfo } from '../host/cpuinfo.js';
import { readFreeBytes } from '../host/space.js';
import type { Accel } from '../vm/hypervisor.js';
import { checkpointPaths, vmPaths } from '../vm/paths.js';
import { HyperError, type ErrorKind } from '../errors.js';
import { type JobContext, qemuVersionFile } from './context.js';
import { listRecords, type VmRecord } from './record.js';
import { requireRecord, startContainer, stopContainer } from './container.js';

/**
 * Snapshots of one service, kept inside its qcow2 disks (internal snapshots)
 * and listed in `<vm dir>/snapshots.json`:
 *   volumes:    its writable volume disks, taken with the guest's filesystems
 *               frozen; restoring stops the service, reverts them, boots again.
 *   checkpoint: the whole VM: every writable disk, and its RAM and device
 *               state in files beside them (vm/paths.ts checkpointPaths);
 *               restoring resumes the processes where they were.
 */
export type SnapshotKind = 'volumes' | 'checkpoint';

export interface SnapshotRecord {
  name: string;
  kind: SnapshotKind;
  createdAt: string;
  /** Disk serials the snapshot is in ("rootfs" is the root disk). */
  disks: string[];
  /** What made it: a checkpoint only loads into the same guest bundle and QEMU. */
  bundle: string;
  qemu: string;
  /** The accelerator and the guest CPU it ran on; absent in records older than them. */
  accel?: Accel;
  cpu?: string;
  /** Milliseconds the snapshot took. */
  tookMs: number;
  /** The guest's status reports when a checkpoint was taken, restored with it. */
  status?: string;
  /**
   * Where a checkpoint's RAM is: `file`, beside the disks. Checkpoints
   * without it were taken before that, with the RAM inside the root disk,
   * and are refused with that reason.
   */
  memory?: 'file';
}

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

/** Why `tag` cannot name a snapshot (it becomes a qcow2 snapshot tag and a file name), if it cannot. */
export function snapshotNameProblem(tag: string): string | undefined {
  if (NAME.test(tag)) return undefined;
  return `"${tag}" is not a valid snapshot name: use letters, digits, "_", "." and "-", starting with a letter or digit (at most 63)`;
}

function snapshotsFile(record: VmRecord): string {
  return path.join(record.machine.dir, 'snapshots.json');
}

/** The service's snapshots; a damaged list is an error, never overwritten by the next snapshot. */
async function readSnapshots(record: VmRecord): Promise<SnapshotRecord[]> {
  const remedy =
    `it lists the snapshots of ${record.name}, which are kept inside its disks ` +
    `("qemu-img snapshot -l" shows them); restore the file or delete it to start a new list`;
  return (await readStateFile<SnapshotRecord[]>(snapshotsFile(record), remedy, 'array')) ?? [];
}

export async function writeSnapshots(record: VmRecord, snapshots: SnapshotRecord[]): Promise<void> {
  await writeFileAtomic(snapshotsFile(record), JSON.stringify(snapshots, null, 2));
}

/**
 * "QEMU emulator version 7.2.19 (Debian ...)": the first line of the host
 * QEMU's `--version`, asked once per binary and kept on disk (qemuVersionFile).
 */
export async function qemuVersion(job: Pick<JobContext, 'host' | 'cacheDir'>): Promise<string> {
  return (await knownQemuVersion(job.host.qemu, qemuVersionFile(job))).text;
}

/**
 * The guest CPU a checkpoint or template depends on. Under TCG it is QEMU's
 * "max" model, fixed by the QEMU version. Under KVM it is the named model the
 * probe chose (the same on every host that can run it), else "-cpu host", so
 * the host's model and feature flags: a guest resumed on a CPU without a
 * feature it uses dies. An unreadable /proc/cpuinfo gives "host unknown CPU
 * (flags ...)" (see cpuIdentity), never an error.
 */
export async function guestCpu(accel: Accel, cpuModel?: string): Promise<string> {
  if (accel === 'tcg') return 'max';
  if (cpuModel) return `model ${cpuModel}`;
  return cpuIdentity(await readCpuInfo());
}

/** A default name: the time, as docker commit's generated names are not useful to type. */
export function defaultSnapshotName(now = new Date()): string {
  return `snap-${now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}`;
}

function writableVolumes(record: VmRecord) {
  return (record.disks ?? []).filter((d) => !d.readOnly);
}

/** A snapshot that cannot be taken, restored or found; the throw site sets the kind when it is not Invalid. */
export class SnapshotError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'SnapshotError';
}

/** Takes snapshot `name` of a service; returns its record. Nothing is kept when it fails. */
export async function snapshotService(
  service: string,
  name: string | undefined,
  options: { checkpoint: boolean; freezeTimeoutMs: number },
  job: JobContext,
): Promise<SnapshotRecord> {
  const record = await requireRecord(job, service);
  const tag = name ?? defaultSnapshotName();
  const problem = snapshotNameProblem(tag);
  if (problem) throw new SnapshotError(problem);
  const snapshots = await readSnapshots(record);
  if (snapshots.some((s) => s.name === tag)) {
    throw new SnapshotError(
      `${service} already has a snapshot named "${tag}"; remove it with "hyper snapshot rm ${service} ${tag}" or choose another name`,
      { kind: 'Conflict' },
    );
  }
  if (!(await job.hypervisor.isRunning(record.machine))) {
    throw new SnapshotError(`${service} is not running; a snapshot is taken of a running service`, {
      kind: 'Conflict',
    });
  }
  if (options.checkpoint && record.machine.shares?.length) {
    throw new SnapshotError(
      `${service} shares host directories live (${record.machine.shares.map((s) => s.source).join(', ')}); a checkpoint cannot hold their state: snapshot its volumes instead`,
      { kind: 'Conflict' },
    );
  }
  if (options.checkpoint && record.machine.slots === undefined) {
    const why =
      job.hypervisor.templateSlots(record.machine) === undefined
        ? `it has more disks (${record.machine.disks?.length ?? 0}) than a checkpoint can hold`
        : 'it was made by an earlier hyper-services, without the device layout a checkpoint needs; make it again';
    throw new SnapshotError(`${service} cannot be checkpointed: ${why}; snapshot its volumes instead`, {
      kind: 'Conflict',
    });
  }
  const volumes = writableVolumes(record);
  const disks = options.checkpoint
    ? ['rootfs', ...volumes.map((d) => d.serial)]
    : volumes.map((d) => d.serial);
  if (disks.length === 0) {
    throw new SnapshotError(
      `${service} has no writable volumes to snapshot; use "hyper snapshot --checkpoint ${service}" for the whole VM`,
    );
  }
  const started = Date.now();
  try {
    if (options.checkpoint) {
      await job.hypervisor.saveCheckpoint(record.machine, tag);
    } else {
      await job.hypervisor.snapshotDisks(record.machine, disks, tag, {
        mountpoints: volumes.map((d) => `${CONTAINER_ROOT}${d.target}`),
        timeoutMs: options.freezeTimeoutMs,
      });
    }
  } catch (error: unknown) {
    await job.hypervisor.deleteSnapshot(record.machine, disks, tag).catch(() => undefined);
    const hint = options.checkpoint ? await spaceHint(record) : '';
    throw new SnapshotError(
      `snapshot "${tag}" of ${service} failed: ${(error as Error).message}${hint}; nothing was kept`,
      { kind: 'Internal', cause: error },
    );
  }
  const snapshot: SnapshotRecord = {
    name: tag,
    kind: options.checkpoint ? 'checkpoint' : 'volumes',
    createdAt: new Date().toISOString(),
    disks,
    bundle: record.machine.bundle.version,
    qemu: await qemuVersion(job),
    accel: record.machine.accel,
    cpu: await guestCpu(record.machine.accel, record.machine.cpuModel),
    tookMs: Date.now() - started,
  };
  if (options.checkpoint) {
    snapshot.status = await readFile(vmPaths(record.machine.dir).status, 'utf8');
    snapshot.memory = 'file';
  }
  await writeSnapshots(record, [...snapshots, snapshot]);
  return snapshot;
}

/** QEMU reports a full disk during a checkpoint as an I/O error; say when space is the likely cause. */
async function spaceHint(record: VmRecord): Promise<string> {
  return checkpointSpaceHint(
    await readFreeBytes(record.machine.dir),
    record.machine.dir,
    record.machine.memoryMiB,
  );
}

/**
 * The note added to a failed checkpoint when the disk may be why: free space
 * below the VM's RAM. Unknown free space (statfs failed) adds nothing. Pure.
 */
export function checkpointSpaceHint(free: number | undefined, dir: string, memoryMiB: number): string {
  if (free === undefined) return '';
  const freeMiB = Math.floor(free / (1024 * 1024));
  if (freeMiB >= memoryMiB) return '';
  return ` (the disk holding ${dir} has ${freeMiB} MiB free; a checkpoint writes up to the VM's ${memoryMiB} MiB of RAM)`;
}

export async function requireSnapshot(
  job: Pick<JobContext, 'stateDir'>,
  service: string,
  name: string,
): Promise<[VmRecord, SnapshotRecord]> {
  const record = await requireRecord(job, service);
  const snapshots = await readSnapshots(record);
  const snapshot = snapshots.find((s) => s.name === name);
  if (!snapshot) {
    const known = snapshots.map((s) => s.name).join(', ') || 'none';
    throw new SnapshotError(`${service} has no snapshot named "${name}" (snapshots: ${known})`, {
      kind: 'NotFound',
    });
  }
  return [record, snapshot];
}

/**
 * Whether this host can load a checkpoint: the same guest bundle, QEMU
 * (`here.qemu`: its version line, qemuVersion), accelerator and guest CPU
 * must have made it. Returns the first mismatch.
 */
export async function checkpointCompatibility(
  snapshot: SnapshotRecord,
  here: { bundle: string; accel: Accel; cpuModel?: string; qemu: string },
): Promise<string | undefined> {
  const { bundle: bundleVersion, accel } = here;
  if (snapshot.kind === 'checkpoint' && snapshot.memory !== 'file') {
    return `checkpoint "${snapshot.name}" was taken by an earlier hyper-services, which kept the RAM inside the root disk; this one loads only checkpoints with the RAM in a file of its own: take the checkpoint again`;
  }
  if (snapshot.bundle !== bundleVersion) {
    return `checkpoint "${snapshot.name}" was made with guest bundle ${snapshot.bundle}, and this host uses ${bundleVersion}`;
  }
  const { qemu } = here;
  if (snapshot.qemu !== qemu)
    return `checkpoint "${snapshot.name}" was made by "${snapshot.qemu}", this host has "${qemu}"`;
  if (snapshot.accel && snapshot.accel !== accel)
    return `checkpoint "${snapshot.name}" was made under ${snapshot.accel}, this host runs ${accel}`;
  const cpu = await guestCpu(accel, here.cpuModel);
  if (snapshot.cpu && snapshot.cpu !== cpu)
    return `checkpoint "${snapshot.name}" was made on guest CPU "${snapshot.cpu}", this host gives "${cpu}"`;
  return undefined;
}

/**
 * Restores snapshot `name`. A checkpoint loads in place when the VM runs, else
 * the VM resumes from it; a volume snapshot stops the service, reverts its
 * disks and boots it again. Returns how long it took in ms.
 */
export async function restoreService(
  service: string,
  name: string,
  job: JobContext,
  options: { stopGraceMs: number },
): Promise<number> {
  const [record, snapshot] = await requireSnapshot(job, service, name);
  const started = Date.now();
  const running = await job.hypervisor.isRunning(record.machine);
  if (snapshot.kind === 'checkpoint') {
    const problem = await checkpointCompatibility(snapshot, {
      bundle: record.machine.bundle.version,
      accel: record.machine.accel,
      ...(record.machine.cpuModel ? { cpuModel: record.machine.cpuModel } : {}),
      qemu: await qemuVersion(job),
    });
    if (problem) throw new SnapshotError(`cannot restore: ${problem}`);
    // Before the running VM goes: a checkpoint whose files are gone cannot bring it back.
    const saved = checkpointPaths(record.machine.dir, name);
    for (const file of [saved.ram, saved.state]) {
      if (!(await exists(file)))
        throw new SnapshotError(
          `cannot restore: checkpoint "${name}" of ${service} is incomplete: ${file} is missing`,
          {
            kind: 'NotFound',
          },
        );
    }
    // The running VM is replaced: whatever it did since the checkpoint is what a restore discards.
    if (running) await job.hypervisor.kill(record.machine);
    // startContainer puts the guest's status back before QEMU starts.
    await startContainer(service, job, { checkpoint: name, status: snapshot.status ?? '' });
    return Date.now() - started;
  }
  if (running) await stopContainer(service, options.stopGraceMs, job);
  await job.hypervisor.revertDisks(record.machine, snapshot.disks, name);
  await startContainer(service, job);
  return Date.now() - started;
}

export async function listSnapshots(
  service: string | undefined,
  job: JobContext,
): Promise<{ service: string; snapshot: SnapshotRecord }[]> {
  const chosen = service ? [await requireRecord(job, service)] : await listRecords(job);
  const rows = [];
  for (const record of chosen) {
    for (const snapshot of await readSnapshots(record)) rows.push({ service: record.name, snapshot });
  }
  return rows;
}

export async function removeSnapshot(service: string, name: string, job: JobContext): Promise<void> {
  const [record, snapshot] = await requireSnapshot(job, service, name);
  await job.hypervisor.deleteSnapshot(record.machine, snapshot.disks, name);
  const remaining = (await readSnapshots(record)).filter((s) => s.name !== name);
  await writeSnapshots(record, remaining);
}
