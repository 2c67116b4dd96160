import { mkdir, mkdtemp, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import * as tar from 'tar';
import { HyperError, type ErrorKind } from '../errors.js';
import { exists, fileDigest, isNotFound } from '../files.js';
import type { PublishedPort } from '../network/ports.js';
import { isVolumeName, type MountDisk } from '../storage/mounts.js';
import { qemuImg } from '../tools/qemu/img.js';
import type { RecordFields } from './create.js';
import type { JobContext } from './context.js';
import { snapshotNameProblem, type SnapshotRecord } from './snapshots.js';

/**
 * One snapshot of a service as a single tar file, to carry it to another
 * machine or a later run: the service's record, the snapshot's record, its
 * root filesystem base as a compact qcow2, and every disk with that snapshot
 * alone in it (the root overlay too, for a checkpoint). Importing it makes a
 * stopped service that `hyper restore` resumes or boots.
 */
export const MANIFEST = 'hyper-export.json';
export const FORMAT = 'hyper-export';
/** 2: a checkpoint's RAM and device state are entries of their own (before, its RAM was inside the root disk). */
export const VERSION = 2;
/** Versions this hyper reads: a version-1 checkpoint is then refused with the reason (snapshots.ts). */
const READABLE = [1, 2];
export const BASE = 'base.qcow2';
export const ROOT = 'rootfs.qcow2';
/** A checkpoint's RAM, as a compact qcow2 (the file itself is raw and sparse), and its device state. */
export const RAM = 'checkpoint-ram.qcow2';
export const STATE = 'checkpoint-state';
/** Entry names are flat: a manifest, disks and guest files, nothing with a path. */
export const ENTRY = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export interface ExportedFile {
  name: string;
  bytes: number;
  sha256: string;
}

export interface ExportManifest {
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
    /**
     * The device layout it ran in (MachineSpec.slots); absent for the layout
     * without template slots. A checkpoint loads only into its own.
     */
    slots?: number;
  };
  /** A checkpoint's RAM and device state: entry names. */
  memory?: { ram: string; state: string };
  files: ExportedFile[];
}

export class TransferError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'TransferError';
}

/** A scratch directory on the state dir's filesystem, so disks move into place by rename. */
export async function scratchDir(job: Pick<JobContext, 'stateDir'>, kind: string): Promise<string> {
  const parent = path.join(job.stateDir, 'tmp');
  await mkdir(parent, { recursive: true });
  return mkdtemp(path.join(parent, `${kind}-`));
}

/** Reads and checks an export's manifest against the files beside it. */
export async function checkExport(dir: string, file: string): Promise<ExportManifest> {
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
  if (!READABLE.includes(manifest.version)) {
    throw new TransferError(
      `${file} is a hyper export of version ${manifest.version}; this hyper reads versions ${READABLE.join(' and ')}`,
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
  // The snapshot's name becomes a path here (a checkpoint's RAM dir) and a qcow2 snapshot tag.
  if (snapshotNameProblem(manifest.snapshot.name))
    throw new TransferError(`${file} is damaged: its snapshot has a bad name`);
  if (manifest.snapshot.kind === 'checkpoint' && manifest.snapshot.memory === 'file' && !manifest.memory) {
    throw new TransferError(`${file} is damaged: its checkpoint's RAM and device state are not listed`);
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
    ...(manifest.memory ? [manifest.memory.ram, manifest.memory.state] : []),
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

export async function extract(file: string, dir: string): Promise<void> {
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
