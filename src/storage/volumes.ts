import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exists, treeBytes } from '../files.js';
import { run } from '../process/run.js';
import { MiB, SizeError } from '../sizes.js';
import { qemuImg } from '../tools/qemu/img.js';
import { MountError, type MountDisk, type MountSpec } from './mounts.js';
import { volumeBytes } from './volume-size.js';

const GiB = 1024 * MiB;
/** A volume's size when nothing sets one. The qcow2 only grows as the guest writes. */
export const DEFAULT_VOLUME_SIZE = 10 * GiB;
/** Room to write in a host-path disk mounted read-write, beyond a copy of its content. */
const BIND_HEADROOM = 256 * MiB;

/** The size of a new volume that sets none: `text` from HYPER_VOLUME_SIZE (`2G`, `512M`), else DEFAULT_VOLUME_SIZE. Pure. */
export function defaultVolumeSize(text: string | undefined): number {
  if (!text) return DEFAULT_VOLUME_SIZE;
  try {
    return volumeBytes(text);
  } catch (error: unknown) {
    if (error instanceof SizeError)
      throw new MountError(`HYPER_VOLUME_SIZE: ${error.message}`, { cause: error });
    throw error;
  }
}

/** Sizes in bytes for the volumes prepareMountDisks creates; an existing named volume keeps its own. */
export interface VolumeSizes {
  /** For each new volume without a size of its own; DEFAULT_VOLUME_SIZE when absent. */
  defaultBytes?: number | undefined;
  /** Named volumes' own sizes (compose `driver_opts: { size }`), by name. */
  named?: Readonly<Record<string, number>> | undefined;
}

/** Where a job's named volumes live: `<stateDir>/volumes/<name>.qcow2`. They outlive the services. */
export function volumePath(stateDir: string, name: string): string {
  return path.join(stateDir, 'volumes', `${name}.qcow2`);
}

/**
 * A qcow2 holding an ext4 of `sizeBytes` (sparse: it grows as written), filled
 * from `contentDir` when given. Built as raw beside `target` (mkfs needs a
 * plain file), its lost+found removed (a volume reads as an empty directory,
 * as Docker's do; postgres's initdb refuses a data dir that holds anything),
 * converted, then renamed into place: never half there.
 */
export async function createExt4Disk(target: string, sizeBytes: number, contentDir?: string): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  const raw = `${target}.${process.pid}.raw`;
  const temp = `${target}.${process.pid}.partial`;
  try {
    await run({ program: 'truncate', args: ['-s', String(sizeBytes), raw] });
    await run({
      program: 'mkfs.ext4',
      args: [
        '-q',
        '-F',
        '-m',
        '0',
        '-E',
        'lazy_itable_init=1,lazy_journal_init=1',
        ...(contentDir ? ['-d', contentDir] : []),
        raw,
      ],
    });
    await run({ program: 'debugfs', args: ['-w', '-R', 'rmdir lost+found', raw] });
    await qemuImg.convert(raw, temp, { from: 'raw', to: 'qcow2' });
    await rename(temp, target);
  } finally {
    await rm(raw, { force: true });
    await rm(temp, { force: true });
  }
}

/**
 * The named volume's disk, made empty on first use with `sizeBytes`; `created`
 * says which. An existing volume keeps the size it was made with, as Docker's do.
 */
export async function ensureVolume(
  stateDir: string,
  name: string,
  sizeBytes = DEFAULT_VOLUME_SIZE,
): Promise<{ path: string; created: boolean }> {
  const file = volumePath(stateDir, name);
  if (await exists(file)) {
    // Made ahead of its first mount (docker volume create): that mount still fills it from the image, as Docker's does.
    const fresh = await exists(freshMarker(file));
    if (fresh) await rm(freshMarker(file), { force: true });
    return { path: file, created: fresh };
  }
  await createExt4Disk(file, sizeBytes);
  return { path: file, created: true };
}

function freshMarker(volumeFile: string): string {
  return `${volumeFile}.fresh`;
}

/** Makes a named volume before any VM mounts it; an existing one is kept as it is. Returns whether it was made. */
export async function createVolumeAhead(stateDir: string, name: string, sizeBytes: number): Promise<boolean> {
  const file = volumePath(stateDir, name);
  if (await exists(file)) return false;
  await createExt4Disk(file, sizeBytes);
  await writeFile(freshMarker(file), '');
  return true;
}

/**
 * Makes the disks for one VM's mounts in `vmDir`: named volumes in the job's
 * `stateDir` (created on first use), anonymous volumes and copies of host paths
 * in the VM's own directory (gone with it). Serials are vol0, vol1... in order.
 */
export async function prepareMountDisks(
  stateDir: string,
  mounts: readonly MountSpec[],
  vmDir: string,
  sizes: VolumeSizes = {},
  options: { shareBinds?: boolean } = {},
): Promise<MountDisk[]> {
  const defaultBytes = sizes.defaultBytes ?? DEFAULT_VOLUME_SIZE;
  const disks: MountDisk[] = [];
  for (const mount of mounts) {
    const serial = `vol${disks.length}`;
    if (mount.kind === 'volume') {
      const volume = await ensureVolume(stateDir, mount.name, sizes.named?.[mount.name] ?? defaultBytes);
      disks.push({
        serial,
        path: volume.path,
        target: mount.target,
        readOnly: mount.readOnly,
        copyUp: volume.created && !mount.readOnly,
        volume: mount.name,
      });
    } else if (mount.kind === 'anonymous') {
      const file = path.join(vmDir, 'disks', `${serial}.qcow2`);
      await createExt4Disk(file, defaultBytes);
      disks.push({
        serial,
        path: file,
        target: mount.target,
        readOnly: mount.readOnly,
        copyUp: !mount.readOnly,
      });
    } else if (mount.kind === 'image') {
      // The image's own cached base, shared read-only by every VM that mounts it.
      disks.push({
        serial,
        path: mount.base,
        target: mount.target,
        readOnly: true,
        copyUp: false,
        image: { name: mount.image, ...(mount.subpath ? { subpath: mount.subpath } : {}) },
      });
    } else if (mount.kind === 'bind' && !options.shareBinds) {
      // Where no directory can be shared live, a copy of it in a disk of its own.
      const file = path.join(vmDir, 'disks', `${serial}.qcow2`);
      const bytes = await treeBytes(mount.source);
      const size = Math.ceil((bytes * 1.25 + 64 * MiB + (mount.readOnly ? 0 : BIND_HEADROOM)) / MiB) * MiB;
      await createExt4Disk(file, size, mount.source);
      disks.push({ serial, path: file, target: mount.target, readOnly: mount.readOnly, copyUp: false });
    }
  }
  return disks;
}

/** Checks what can be checked before anything is made: host paths exist and are directories. */
export async function checkMountSources(
  mounts: readonly MountSpec[],
  options: { createMissing?: boolean } = {},
): Promise<void> {
  for (const mount of mounts) {
    if (mount.kind !== 'bind') continue;
    // As Docker's -v: a missing source is made as a directory (the runner relies on that).
    if (options.createMissing) await mkdir(mount.source, { recursive: true });
    const info = await stat(mount.source).catch(() => undefined);
    if (!info)
      throw new MountError(`host path ${mount.source} (for ${mount.target}) does not exist`, {
        kind: 'NotFound',
      });
    if (!info.isDirectory()) {
      throw new MountError(
        `host path ${mount.source} is not a directory; only directories can be mounted (mount the one that holds it)`,
      );
    }
  }
}
