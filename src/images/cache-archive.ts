import { lstat, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { exists, linkOrCopy } from '../files.js';
import { qemuImg } from '../tools/qemu/img.js';
import { ROOTFS_FORMAT, rootfsPath } from './rootfs.js';
import { BlobStore, BlobVerificationError, parseDigest } from './store.js';

/**
 * A directory that carries cached images between machines (the action's
 * `cache` input hands it to @actions/cache): the blobs of each image, hard
 * links into the store, and each root filesystem as a compact qcow2, since the
 * archiver would read and write every zero of a sparse ext4. manifest.json
 * says what is there; anything it does not list is ignored.
 */
const MANIFEST = 'manifest.json';
const FORMAT = 1;

export interface CachedImage {
  configDigest: string;
  /** Config and layer digests. */
  blobs: string[];
}

interface ArchiveManifest {
  format: number;
  rootfsFormat: string;
  blobs: string[];
  rootfs: string[];
}

export interface ArchiveReport {
  blobs: number;
  rootfs: number;
  /** Entries that were left out, each with the reason. */
  skipped: string[];
}

export interface ArchiveReadReport extends ArchiveReport {
  /** The config digests whose root filesystems this read put in the cache. */
  imported: string[];
}

function archiveBlobPath(dir: string, digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return path.join(dir, 'blobs', algorithm, hex);
}

function archiveRootfsPath(dir: string, configDigest: string): string {
  parseDigest(configDigest);
  return path.join(dir, 'rootfs', `${configDigest.replace(':', '-')}.qcow2`);
}

/** Fills `dir` (emptied first) with what `images` need from `cacheDir`; blobs or bases not on disk are skipped. */
export async function writeCacheArchive(
  cacheDir: string,
  images: readonly CachedImage[],
  dir: string,
): Promise<ArchiveReport> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const store = new BlobStore(path.join(cacheDir, 'store'));
  const manifest: ArchiveManifest = { format: FORMAT, rootfsFormat: ROOTFS_FORMAT, blobs: [], rootfs: [] };
  const skipped: string[] = [];
  for (const digest of new Set(images.flatMap((image) => image.blobs))) {
    if (!(await store.has(digest))) {
      skipped.push(`blob ${digest}: not in the store`);
      continue;
    }
    const target = archiveBlobPath(dir, digest);
    await mkdir(path.dirname(target), { recursive: true });
    await linkOrCopy(store.path(digest), target);
    manifest.blobs.push(digest);
  }
  for (const configDigest of new Set(images.map((image) => image.configDigest))) {
    const base = rootfsPath(cacheDir, configDigest);
    if (!(await exists(base))) {
      skipped.push(`root filesystem for ${configDigest}: not built`);
      continue;
    }
    const target = archiveRootfsPath(dir, configDigest);
    await mkdir(path.dirname(target), { recursive: true });
    await qemuImg.convert(base, target, { from: 'raw', to: 'qcow2' });
    manifest.rootfs.push(configDigest);
  }
  await writeFile(path.join(dir, MANIFEST), JSON.stringify(manifest, null, 2));
  return { blobs: manifest.blobs.length, rootfs: manifest.rootfs.length, skipped };
}

function temporaryBeside(file: string): string {
  return `${file}.${process.pid}.${Date.now()}.partial`;
}

/** Publishes `source` as `target` whole or not at all: written beside it, then renamed. */
async function publish(target: string, write: (temp: string) => Promise<void>): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  const temp = temporaryBeside(target);
  try {
    await write(temp);
    await rename(temp, target);
  } finally {
    await rm(temp, { force: true });
  }
}

export async function requireRegularFile(file: string): Promise<void> {
  if (!(await lstat(file)).isFile()) throw new Error('not a regular file');
}

/**
 * A qcow2 that reads nothing but itself: no external data file, and no
 * backing file unless `backing` allows one (an overlay the caller rebases
 * onto a base of its own).
 */
export async function checkStandaloneQcow2(
  file: string,
  backing: 'refused' | 'allowed' = 'refused',
): Promise<void> {
  await requireRegularFile(file);
  const info = await qemuImg.info(file, { format: 'qcow2' });
  if ((backing === 'refused' && info.backingFilename !== undefined) || info.dataFile !== undefined) {
    throw new Error('the qcow2 refers to another file');
  }
}

function readManifest(text: string): ArchiveManifest {
  const value = JSON.parse(text) as Partial<ArchiveManifest>;
  if (
    value.format !== FORMAT ||
    typeof value.rootfsFormat !== 'string' ||
    !Array.isArray(value.blobs) ||
    !Array.isArray(value.rootfs)
  ) {
    throw new Error(`not a cache archive of format ${FORMAT}`);
  }
  return value as ArchiveManifest;
}

/**
 * Moves what an archive holds into `cacheDir`. Every blob is checked against
 * its digest and every base must be a readable qcow2; an entry that fails is
 * skipped with its reason, and nothing half-written is left in the cache.
 * Entries already in the cache are kept as they are.
 */
export async function readCacheArchive(dir: string, cacheDir: string): Promise<ArchiveReadReport> {
  const report: ArchiveReadReport = { blobs: 0, rootfs: 0, imported: [], skipped: [] };
  let manifest: ArchiveManifest;
  try {
    manifest = readManifest(await readFile(path.join(dir, MANIFEST), 'utf8'));
  } catch (error: unknown) {
    report.skipped.push(`the whole archive: ${(error as Error).message}`);
    return report;
  }
  const store = new BlobStore(path.join(cacheDir, 'store'));
  for (const digest of manifest.blobs) {
    try {
      const source = archiveBlobPath(dir, digest);
      if (await store.has(digest)) continue;
      await requireRegularFile(source);
      await store.adopt(digest, source);
      report.blobs++;
    } catch (error: unknown) {
      const message = (error as Error).message;
      report.skipped.push(error instanceof BlobVerificationError ? message : `blob ${digest}: ${message}`);
    }
  }
  for (const configDigest of manifest.rootfs) {
    if (manifest.rootfsFormat !== ROOTFS_FORMAT) {
      report.skipped.push(
        `root filesystem for ${configDigest}: built in format ${manifest.rootfsFormat}, this version uses ${ROOTFS_FORMAT}`,
      );
      continue;
    }
    try {
      const source = archiveRootfsPath(dir, configDigest);
      const target = rootfsPath(cacheDir, configDigest);
      if (await exists(target)) continue;
      await checkStandaloneQcow2(source);
      await publish(target, (temp) => qemuImg.convert(source, temp, { from: 'qcow2', to: 'raw' }));
      report.rootfs++;
      report.imported.push(configDigest);
    } catch (error: unknown) {
      report.skipped.push(`root filesystem for ${configDigest}: ${(error as Error).message}`);
    }
  }
  return report;
}
