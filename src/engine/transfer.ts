import { copyFile, mkdir, mkdtemp, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';
import { HyperError, type ErrorKind } from '../errors.js';
import { exists, fileDigest, isNotFound } from '../files.js';
import { rewriteNetworkFiles } from '../guest/config.js';
import type { PortSpec, PublishedPort } from '../network/ports.js';
import { run } from '../process/run.js';
import { validateName } from '../spec/container.js';
import { isVolumeName, type MountDisk } from '../storage/mounts.js';
import { volumePath } from '../storage/volumes.js';
import { qemuImg } from '../tools/qemu/img.js';
import { vmPaths } from '../vm/paths.js';
import {
  claimStep,
  createVm,
  networkStep,
  newDraft,
  recordFields,
  recordStep,
  type Draft,
  type RecordFields,
} from './create.js';
import type { BootContext, JobContext } from './dirs.js';
import type { VmRecord } from './record.js';
import { tcpPorts } from './run.js';
import {
  checkpointCompatibility,
  requireSnapshot,
  writeSnapshots,
  type SnapshotRecord,
} from './snapshots.js';
import type { Step } from './steps.js';

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
  service: RecordFields & {
    name: string;
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

export class TransferError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
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
async function scratchDir(job: Pick<JobContext, 'stateDir'>, kind: string): Promise<string> {
  const parent = path.join(job.stateDir, 'tmp');
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
  job: JobContext,
): Promise<number> {
  const [record, snapshot] = await requireSnapshot(job, service, name);
  const target = path.resolve(file);
  if (await exists(target).catch(() => false)) {
    throw new TransferError(`${target} already exists; remove it or choose another file`);
  }
  const partial = await claimOutput(target);
  const staging = await scratchDir(job, 'export');
  try {
    const paths = vmPaths(record.machine.dir);
    const disks = record.disks ?? [];
    const copies: [string, string][] = disks.map((d) => [d.path, `${d.serial}.qcow2`]);
    if (snapshot.kind === 'checkpoint') copies.push([paths.rootDisk, ROOT]);
    const running = await job.hypervisor.isRunning(record.machine);
    if (running) await job.hypervisor.pause(record.machine);
    try {
      for (const [from, entry] of copies) {
        await run({ program: 'cp', args: ['--sparse=always', from, path.join(staging, entry)] });
      }
    } finally {
      if (running) await job.hypervisor.resume(record.machine);
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
        ...recordFields(record),
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
 * manifest, refuses a checkpoint this host cannot load, then runs the create
 * steps with the export's disks, guest files and root disk moved into place
 * (named volumes into the job's volumes) instead of made. On failure nothing
 * of it is left, and existing volumes and services are untouched.
 */
export async function importSnapshot(
  file: string,
  options: ImportOptions,
  job: BootContext,
): Promise<ImportResult> {
  const source = path.resolve(file);
  const staging = await scratchDir(job, 'import');
  try {
    await extract(source, staging);
    const manifest = await checkExport(staging, source);
    const { snapshot, service } = manifest;
    if (options.image !== undefined && service.image !== options.image) {
      throw new TransferError(`${source} holds a service of image ${service.image}, not ${options.image}`);
    }
    if (snapshot.kind === 'checkpoint') {
      const problem = await checkpointCompatibility(snapshot, {
        bundle: job.bundle.version,
        accel: job.accel,
        qemu: job.host.qemu,
      });
      if (problem) throw new TransferError(`cannot import ${source}: ${problem}`);
    }
    const name = options.name ?? service.name;
    validateName(name);
    for (const disk of service.disks) {
      if (disk.volume && (await exists(volumePath(job.stateDir, disk.volume)))) {
        throw new TransferError(
          `cannot import ${source}: volume ${disk.volume} already exists here; remove it first ("hyper volume rm ${disk.volume}")`,
          { kind: 'Conflict' },
        );
      }
    }
    const published = options.ports ?? service.ports.map((p) => ({ ...p, hostPort: 0 }));
    const exportedOn = service.network ?? 'user';
    const steps: Step<Draft>[] = [
      claimStep(
        (taken) =>
          `the name "${taken}" is already in use by a VM; remove it with "hyper rm ${taken}" or import with --name`,
      ),
      networkStep(() => ({
        service: name,
        aliases: [],
        containerPorts: tcpPorts(published, [], []),
        published,
      })),
      {
        name: 'check the network kind',
        async run(draft) {
          const mode = draft.network?.mode;
          if (snapshot.kind === 'checkpoint' && exportedOn !== mode) {
            throw new TransferError(
              `cannot import ${source}: the checkpoint was taken on a ${exportedOn} network and this job's network is ${mode}; a checkpoint resumes only on the same kind (network ${exportedOn})`,
            );
          }
        },
      },
      moveDisksStep(staging, service.disks),
      moveGuestFilesStep(staging, service.guestFiles),
      moveRootDiskStep(staging, service.rootDisk),
      recordStep(service, async (draft) => {
        await writeFile(vmPaths(draft.dir).status, '');
        if (draft.record) await writeSnapshots(draft.record, [snapshot]);
      }),
    ];
    const record = await createVm(newDraft(job, name), steps);
    return { record, snapshot };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** The export's disks: named volumes into the job's volumes, the others into the VM's directory. */
function moveDisksStep(staging: string, disks: readonly MountDisk[]): Step<Draft> {
  const madeVolumes: string[] = [];
  return {
    name: 'move the disks',
    async run(draft) {
      await mkdir(path.join(draft.dir, 'disks'));
      for (const disk of disks) {
        const at = disk.volume
          ? volumePath(draft.job.stateDir, disk.volume)
          : path.join(draft.dir, 'disks', `${disk.serial}.qcow2`);
        if (disk.volume) {
          await mkdir(path.dirname(at), { recursive: true });
          madeVolumes.push(at);
        }
        await rename(path.join(staging, disk.path), at);
        draft.disks.push({ ...disk, path: at });
      }
    },
    async undo() {
      for (const volume of madeVolumes) await rm(volume, { force: true });
    },
  };
}

/** The export's guest files, their network lines rewritten for this job's network. */
function moveGuestFilesStep(staging: string, files: readonly { name: string; entry: string }[]): Step<Draft> {
  return {
    name: 'move the guest files',
    async run(draft) {
      const paths = vmPaths(draft.dir);
      await mkdir(paths.guestFiles);
      for (const g of files) {
        const at = path.join(paths.guestFiles, g.name);
        await rename(path.join(staging, g.entry), at);
        draft.guestFiles.push({ name: g.name, path: at });
      }
      if (!draft.view) throw new TransferError(`${draft.name}: no network view for its guest files`);
      const settingsFile = path.join(paths.guestFiles, 'settings');
      for (const rewritten of rewriteNetworkFiles(await readFile(settingsFile, 'utf8'), draft.view.guest))
        await writeFile(path.join(paths.guestFiles, rewritten.name), rewritten.content);
    },
  };
}

/** The export's base beside the VM, and the root overlay on it: the exported one for a checkpoint, else a new one. */
function moveRootDiskStep(staging: string, rootDisk: string | undefined): Step<Draft> {
  return {
    name: 'move the root disk',
    async run(draft) {
      const paths = vmPaths(draft.dir);
      const base = path.join(draft.dir, BASE);
      await rename(path.join(staging, BASE), base);
      if (rootDisk) {
        await rename(path.join(staging, rootDisk), paths.rootDisk);
        await qemuImg.rebaseUnsafe(paths.rootDisk, base, 'qcow2');
      } else {
        await qemuImg.createOverlay(paths.rootDisk, base, 'qcow2');
      }
    },
  };
}
