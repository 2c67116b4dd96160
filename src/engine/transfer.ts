import { copyFile, mkdir, mkdtemp, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';
import { exists, fileDigest, isNotFound } from '../files.js';
import { rewriteNetworkFiles } from '../guest/config.js';
import { leaveNetwork, memberOf, memberView } from '../network/job.js';
import type { PortSpec, PublishedPort } from '../network/ports.js';
import { DEFAULT_NETWORK, type NetworkSettings } from '../network/settings.js';
import { run } from '../process/run.js';
import { qemuImg } from '../tools/qemu/img.js';
import { isVolumeName, type MountDisk } from '../storage/mounts.js';
import { volumePath } from '../storage/volumes.js';
import { vmPaths } from '../vm/paths.js';
import { stateDir, vmDir } from './dirs.js';
import type { HostContext } from './host.js';
import { writeRecord, type VmRecord } from './record.js';
import { machineSpec, ServiceError, tcpPorts, validateName } from './service.js';
import {
  checkpointCompatibility,
  requireSnapshot,
  writeSnapshots,
  type SnapshotRecord,
} from './snapshots.js';

/**
 * One snapshot of a service as a single tar file, to carry it to another
 * machine or a later run: the service's record, the snapshot's record, its
 * root filesystem base as a compact qcow2, and every disk with that snapshot
 * alone in it (the root overlay too, for a checkpoint). Importing it makes a
 * stopped service that `hyper restore` resumes or boots.
 */
const MANIFEST = 'hyper-export.json';
const FORMAT = 'hyper-export';
const VERSION = 1;
const BASE = 'base.qcow2';
const ROOT = 'rootfs.qcow2';
/** Entry names are flat: a manifest, disks and guest files, nothing with a path. */
const ENTRY = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

interface ExportedFile {
  name: string;
  bytes: number;
  sha256: string;
}

interface ExportManifest {
  format: typeof FORMAT;
  version: number;
  createdAt: string;
  snapshot: SnapshotRecord;
  /** The record, its paths replaced by entry names. */
  service: {
    name: string;
    image: string;
    imageDigest: string;
    imageConfigDigest: string;
    imageBlobs: string[];
    user: string;
    workdir: string;
    labels: Record<string, string>;
    healthcheck?: VmRecord['healthcheck'];
    memoryMiB: number;
    cpus: number;
    ports: PublishedPort[];
    /** The disks in mount order; `path` is the entry holding each. */
    disks: MountDisk[];
    /** fw_cfg files: name and entry. */
    guestFiles: { name: string; entry: string }[];
    /** The root overlay's entry, for a checkpoint. */
    rootDisk?: string;
    /** The kind of network it ran on; a checkpoint resumes only on the same (its device state is in it). */
    network?: 'user' | 'bridge';
  };
  files: ExportedFile[];
}

export class TransferError extends ServiceError {
  override name = 'TransferError';
}

/** Leaves snapshot `tag` alone in a copied disk holding `snapshots`, with the disk's current state set to it. */
async function keepOnly(file: string, tag: string, snapshots: readonly string[]): Promise<void> {
  for (const other of snapshots) {
    if (other !== tag) await qemuImg.deleteSnapshot(file, other);
  }
  await qemuImg.applySnapshot(file, tag);
}

/** A scratch directory on the state dir's filesystem, so disks move into place by rename. */
async function scratchDir(kind: string): Promise<string> {
  const parent = path.join(stateDir(), 'tmp');
  await mkdir(parent, { recursive: true });
  return mkdtemp(path.join(parent, `${kind}-`));
}

/** Fails early, before the VM is paused, when `file` cannot be written. Returns the temp name to write. */
async function claimOutput(file: string): Promise<string> {
  const partial = `${file}.${process.pid}.partial`;
  try {
    const handle = await open(partial, 'wx');
    await handle.close();
  } catch (error: unknown) {
    throw new TransferError(`cannot write ${file}: ${(error as Error).message}`);
  }
  return partial;
}

/**
 * Writes snapshot `name` of `service` to `file` (a tar; gzip when the name
 * ends in .gz or .tgz). A running VM is paused while its disk files are
 * copied. Returns the bytes written. Nothing is left behind when it fails.
 */
export async function exportSnapshot(
  service: string,
  name: string,
  file: string,
  host: Pick<HostContext, 'hypervisor'>,
): Promise<number> {
  const [record, snapshot] = await requireSnapshot(service, name);
  const target = path.resolve(file);
  if (await exists(target).catch(() => false)) {
    throw new TransferError(`${target} already exists; remove it or choose another file`);
  }
  const partial = await claimOutput(target);
  const staging = await scratchDir('export');
  try {
    const paths = vmPaths(record.machine.dir);
    const disks = record.disks ?? [];
    const copies: [string, string][] = disks.map((d) => [d.path, `${d.serial}.qcow2`]);
    if (snapshot.kind === 'checkpoint') copies.push([paths.rootDisk, ROOT]);
    const running = await host.hypervisor.isRunning(record.machine);
    if (running) await host.hypervisor.pause(record.machine);
    try {
      for (const [from, entry] of copies) {
        await run({ program: 'cp', args: ['--sparse=always', from, path.join(staging, entry)] });
      }
    } finally {
      if (running) await host.hypervisor.resume(record.machine);
    }
    for (const [, entry] of copies) {
      const copy = path.join(staging, entry);
      const snapshots = await qemuImg.snapshotNames(copy);
      if (snapshots.includes(name)) await keepOnly(copy, name, snapshots);
    }
    const base = await backingFile(paths.rootDisk);
    await qemuImg.convert(base, path.join(staging, BASE), { to: 'qcow2' });
    const guestFiles = record.machine.guestFiles.map((g) => ({ name: g.name, entry: `guest-${g.name}` }));
    for (const g of record.machine.guestFiles) await copyFile(g.path, path.join(staging, `guest-${g.name}`));
    const entries = [BASE, ...copies.map(([, entry]) => entry), ...guestFiles.map((g) => g.entry)];
    const files: ExportedFile[] = [];
    for (const entry of entries) {
      const at = path.join(staging, entry);
      files.push({ name: entry, bytes: (await stat(at)).size, sha256: await fileDigest(at) });
    }
    const manifest: ExportManifest = {
      format: FORMAT,
      version: VERSION,
      createdAt: new Date().toISOString(),
      snapshot,
      service: {
        name: record.name,
        image: record.image,
        imageDigest: record.imageDigest,
        imageConfigDigest: record.imageConfigDigest,
        imageBlobs: record.imageBlobs,
        user: record.user,
        workdir: record.workdir,
        labels: record.labels,
        ...(record.healthcheck ? { healthcheck: record.healthcheck } : {}),
        memoryMiB: record.machine.memoryMiB,
        cpus: record.machine.cpus,
        ports: record.ports,
        disks: disks.map((d) => ({ ...d, path: `${d.serial}.qcow2` })),
        guestFiles,
        ...(snapshot.kind === 'checkpoint' ? { rootDisk: ROOT } : {}),
        network: record.machine.network?.kind === 'tap' ? 'bridge' : 'user',
      },
      files,
    };
    await writeFile(path.join(staging, MANIFEST), JSON.stringify(manifest, null, 2));
    await tar.c({ file: partial, cwd: staging, portable: true, gzip: /\.(t?gz)$/.test(target) }, [
      MANIFEST,
      ...entries,
    ]);
    await rename(partial, target);
    return (await stat(target)).size;
  } finally {
    await rm(partial, { force: true });
    await rm(staging, { recursive: true, force: true });
  }
}

async function backingFile(overlay: string): Promise<string> {
  const info = await qemuImg.info(overlay, { forceShare: true });
  const base = info.fullBackingFilename ?? info.backingFilename;
  if (!base) throw new TransferError(`${overlay} has no base image`);
  return base;
}

export interface ImportOptions {
  /** The service's name here; the exported one by default. */
  name?: string | undefined;
  /** Ports to publish; the exported container ports on free host ports by default. */
  ports?: PortSpec[] | undefined;
  /** Refuse an export of another image (the image reference as the service names it). */
  image?: string | undefined;
  /** How to make the job network if the service is its first. */
  network?: NetworkSettings | undefined;
}

export interface ImportResult {
  record: VmRecord;
  snapshot: SnapshotRecord;
}

/** Reads and checks an export's manifest against the files beside it. */
async function checkExport(dir: string, file: string): Promise<ExportManifest> {
  let manifest: ExportManifest;
  try {
    manifest = JSON.parse(await readFile(path.join(dir, MANIFEST), 'utf8')) as ExportManifest;
  } catch (error: unknown) {
    if (isNotFound(error)) throw new TransferError(`${file} is not a hyper export: it has no ${MANIFEST}`);
    throw new TransferError(`${file} is not a hyper export: ${MANIFEST} is not JSON`);
  }
  if (manifest.format !== FORMAT || typeof manifest.version !== 'number') {
    throw new TransferError(`${file} is not a hyper export: ${MANIFEST} has no "${FORMAT}" format`);
  }
  if (manifest.version !== VERSION) {
    throw new TransferError(
      `${file} is a hyper export of version ${manifest.version}; this hyper reads version ${VERSION}`,
    );
  }
  const service = manifest.service as Partial<ExportManifest['service']> | undefined;
  if (
    typeof manifest.snapshot?.name !== 'string' ||
    !Array.isArray(manifest.files) ||
    !Array.isArray(service?.disks) ||
    !Array.isArray(service.guestFiles) ||
    !Array.isArray(service.ports)
  ) {
    throw new TransferError(`${file} is damaged: ${MANIFEST} lacks the snapshot, service or file list`);
  }
  // Names from the file become paths and QEMU arguments here: each must be a plain name.
  for (const disk of manifest.service.disks) {
    if (!/^vol\d{1,3}$/.test(disk.serial) || (disk.volume !== undefined && !isVolumeName(disk.volume))) {
      throw new TransferError(`${file} is damaged: disk "${disk.serial}" has a bad serial or volume name`);
    }
  }
  for (const g of manifest.service.guestFiles) {
    if (!ENTRY.test(g.name))
      throw new TransferError(`${file} is damaged: guest file "${g.name}" has a bad name`);
  }
  const listed = new Map(manifest.files.map((f) => [f.name, f]));
  const needed = [
    BASE,
    ...manifest.service.disks.map((d) => d.path),
    ...manifest.service.guestFiles.map((g) => g.entry),
    ...(manifest.service.rootDisk ? [manifest.service.rootDisk] : []),
  ];
  for (const entry of needed) {
    const expected = listed.get(entry);
    if (!expected || !ENTRY.test(entry))
      throw new TransferError(`${file} is damaged: it does not list ${entry}`);
    const at = path.join(dir, entry);
    const size = await stat(at).then(
      (s) => s.size,
      () => undefined,
    );
    if (size === undefined) throw new TransferError(`${file} is damaged: ${entry} is missing`);
    if (size !== expected.bytes || (await fileDigest(at)) !== expected.sha256) {
      throw new TransferError(`${file} is damaged: ${entry} does not match its checksum`);
    }
  }
  for (const entry of needed.filter((e) => e.endsWith('.qcow2'))) {
    const info = await qemuImg.info(path.join(dir, entry));
    if (info.format !== 'qcow2') throw new TransferError(`${file} is damaged: ${entry} is not a qcow2`);
    // A backing or data file could make a disk read a host file; only the root overlay has one, replaced below.
    if (info.dataFile || (info.backingFilename && entry !== manifest.service.rootDisk)) {
      throw new TransferError(`${file} is refused: ${entry} refers to a file outside the export`);
    }
  }
  return manifest;
}

async function extract(file: string, dir: string): Promise<void> {
  const refused: string[] = [];
  try {
    await tar.x({
      file,
      cwd: dir,
      strict: true,
      preservePaths: false,
      filter: (entry, stat) => {
        const ok = ENTRY.test(entry) && (stat as { type?: string }).type === 'File';
        if (!ok) refused.push(entry);
        return ok;
      },
    });
  } catch (error: unknown) {
    if (isNotFound(error) && !(await exists(file))) throw new TransferError(`${file} does not exist`);
    const code = (error as { code?: string }).code ?? '';
    // tar's codes (TAR_*) and zlib's (Z_*) mean a damaged or cut-short archive.
    const what = /^(TAR|Z)_/.test(code) ? 'it is not a whole tar archive' : 'it cannot be read';
    throw new TransferError(`${file} is not a hyper export: ${what} (${(error as Error).message})`);
  }
  if (refused.length > 0) {
    throw new TransferError(`${file} is not a hyper export: it holds ${refused.slice(0, 3).join(', ')}`);
  }
}

/**
 * Makes a stopped service from an export: checks every file against the
 * manifest, refuses a checkpoint this host cannot load, then moves the disks
 * into place (named volumes into the job's volumes). On failure nothing of it
 * is left, and existing volumes and services are untouched.
 */
export async function importSnapshot(
  file: string,
  options: ImportOptions,
  host: Pick<HostContext, 'hypervisor' | 'bundle' | 'accel'>,
): Promise<ImportResult> {
  const source = path.resolve(file);
  const staging = await scratchDir('import');
  let dir: string | undefined;
  let joined: string | undefined;
  const madeVolumes: string[] = [];
  try {
    await extract(source, staging);
    const manifest = await checkExport(staging, source);
    const { snapshot, service } = manifest;
    if (options.image !== undefined && service.image !== options.image) {
      throw new TransferError(`${source} holds a service of image ${service.image}, not ${options.image}`);
    }
    if (snapshot.kind === 'checkpoint') {
      const problem = await checkpointCompatibility(snapshot, host.bundle.version, host.accel);
      if (problem) throw new TransferError(`cannot import ${source}: ${problem}`);
    }
    const name = options.name ?? service.name;
    validateName(name);
    dir = vmDir(name);
    for (const disk of service.disks) {
      if (disk.volume && (await exists(volumePath(stateDir(), disk.volume)))) {
        throw new TransferError(
          `cannot import ${source}: volume ${disk.volume} already exists here; remove it first ("hyper volume rm ${disk.volume}")`,
        );
      }
    }
    await mkdir(path.dirname(dir), { recursive: true });
    try {
      await mkdir(dir);
    } catch (error: unknown) {
      const claimed = dir;
      dir = undefined;
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new TransferError(
          `the name "${name}" is already in use by a VM; remove it with "hyper rm ${name}" or import with --name`,
        );
      }
      throw new TransferError(`cannot make ${claimed}: ${(error as Error).message}`);
    }
    const paths = vmPaths(dir);
    const base = path.join(dir, BASE);
    await rename(path.join(staging, BASE), base);
    if (service.rootDisk) {
      await rename(path.join(staging, service.rootDisk), paths.rootDisk);
      await qemuImg.rebaseUnsafe(paths.rootDisk, base, 'qcow2');
    } else {
      await qemuImg.createOverlay(paths.rootDisk, base, 'qcow2');
    }
    const disks: MountDisk[] = [];
    await mkdir(path.join(dir, 'disks'));
    for (const disk of service.disks) {
      const at = disk.volume
        ? volumePath(stateDir(), disk.volume)
        : path.join(dir, 'disks', `${disk.serial}.qcow2`);
      if (disk.volume) {
        await mkdir(path.dirname(at), { recursive: true });
        madeVolumes.push(at);
      }
      await rename(path.join(staging, disk.path), at);
      disks.push({ ...disk, path: at });
    }
    await mkdir(paths.guestFiles);
    const guestFiles = [];
    for (const g of service.guestFiles) {
      const at = path.join(paths.guestFiles, g.name);
      await rename(path.join(staging, g.entry), at);
      guestFiles.push({ name: g.name, path: at });
    }
    const published = options.ports ?? service.ports.map((p) => ({ ...p, hostPort: 0 }));
    const { network, joined: newMember } = await memberOf(
      stateDir(),
      options.network ?? DEFAULT_NETWORK,
      { service: name, aliases: [], containerPorts: tcpPorts(published, [], []), published },
      { info: () => undefined, warn: () => undefined },
    );
    if (newMember) joined = name;
    const exportedOn = service.network ?? 'user';
    if (snapshot.kind === 'checkpoint' && exportedOn !== network.mode) {
      throw new TransferError(
        `cannot import ${source}: the checkpoint was taken on a ${exportedOn} network and this job's network is ${network.mode}; a checkpoint resumes only on the same kind (network ${exportedOn})`,
      );
    }
    const view = memberView(network, name, host.bundle.connect);
    const ports = view.published;
    const settingsFile = path.join(paths.guestFiles, 'settings');
    for (const rewritten of rewriteNetworkFiles(await readFile(settingsFile, 'utf8'), view.guest))
      await writeFile(path.join(paths.guestFiles, rewritten.name), rewritten.content);
    const machine = machineSpec(name, host, {
      memoryMiB: service.memoryMiB,
      cpus: service.cpus,
      guestFiles,
      forwards: view.forwards,
      network: view.machine,
      disks,
    });
    const record: VmRecord = {
      name,
      image: service.image,
      imageDigest: service.imageDigest,
      imageConfigDigest: service.imageConfigDigest,
      imageBlobs: service.imageBlobs,
      createdAt: new Date().toISOString(),
      machine,
      ports,
      user: service.user,
      workdir: service.workdir,
      labels: service.labels,
      disks,
      ...(service.healthcheck ? { healthcheck: service.healthcheck } : {}),
    };
    await writeFile(paths.status, '');
    await writeSnapshots(record, [snapshot]);
    await writeRecord(record);
    return { record, snapshot };
  } catch (error: unknown) {
    if (dir) await rm(dir, { recursive: true, force: true });
    for (const volume of madeVolumes) await rm(volume, { force: true });
    if (joined) await leaveNetwork(stateDir(), [joined]).catch(() => undefined);
    throw error;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
