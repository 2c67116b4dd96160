import { chmod, mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type ErrorKind, HyperError } from '../errors.js';
import { treeBytes } from '../files.js';
import { hasRoom, readFreeBytes } from '../host/space.js';
import { run } from '../process/run.js';
import type { LocalImage } from './image.js';
import { applyLayers, type ApplyReport } from './layers.js';
import { ownershipScript, treePaths } from './ownership.js';

/** Bump when the way a base is built changes, so old bases are not reused. */
export const ROOTFS_FORMAT = 'v1';
const MiB = 1024 * 1024;
/** Free space the service gets on its root filesystem (the qcow2 overlay grows into it lazily). */
export const DEFAULT_HEADROOM_MIB = 1024;

export class RootfsError extends HyperError {
  static override defaultKind: ErrorKind = 'Internal';
  override name = 'RootfsError';
}

export function rootfsPath(cacheDir: string, configDigest: string): string {
  return path.join(cacheDir, 'rootfs', ROOTFS_FORMAT, `${configDigest.replace(':', '-')}.ext4`);
}

/** Size of the ext4 image for a tree of `contentBytes`: content, ext4 overhead, then headroom. Pure. */
export function rootfsSizeMiB(contentBytes: number, headroomMiB = DEFAULT_HEADROOM_MIB): number {
  return Math.ceil((contentBytes * 1.25) / MiB) + 64 + headroomMiB;
}

/** Uncompressed layers are rarely more than this many times their compressed size. */
const EXPANSION = 5;

/**
 * Where the unpacked tree goes: it is only read once, by mkfs, so RAM-backed
 * /dev/shm is the place when it has room (a trial here: GNU tar extracted the
 * same 106 MB in 0.7 s there against 1.9 s on disk); else beside the cache
 * entry, on the disk that must hold the base anyway (os.tmpdir() is often a
 * small tmpfs itself). /dev/shm missing, unreadable by statfs, too small (a
 * container's default is 64 MiB) or read-only all mean beside the cache
 * entry. `wanted` (HYPER_BUILD_TMPDIR) overrides /dev/shm.
 */
async function scratchDir(image: LocalImage, work: string, wanted = '/dev/shm'): Promise<string> {
  const candidate = wanted;
  const needed = image.layers.reduce((sum, layer) => sum + layer.size, 0) * EXPANSION * 2;
  if (!hasRoom(await readFreeBytes(candidate), needed)) return work;
  // Read-only, or not ours to write: statfs answers, mkdtemp does not.
  return mkdtemp(path.join(candidate, 'hyper-rootfs-')).catch(() => work);
}

/**
 * Built without root, the tree could not take the layers' owners or device
 * nodes; debugfs writes them straight into the filesystem image instead.
 */
async function fixOwnership(ext4: string, tree: string, report: ApplyReport): Promise<void> {
  if (report.owners.size === 0 && report.devices.length === 0) return;
  const builder = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  const { script, unwritable } = ownershipScript(await treePaths(tree), report, builder);
  if (unwritable.length) {
    throw new RootfsError(
      `cannot set the owner of ${JSON.stringify(unwritable[0])} without root: the name holds a quote, backslash or newline`,
    );
  }
  if (!script) return;
  const scriptFile = path.join(path.dirname(ext4), 'ownership.debugfs');
  await writeFile(scriptFile, script);
  const result = await run({ program: 'debugfs', args: ['-w', '-f', scriptFile, ext4] });
  // debugfs exits 0 even when a command fails; its complaints are on stderr.
  const complaints = result.stderr.split('\n').filter((line) => line.trim() && !line.startsWith('debugfs '));
  if (complaints.length)
    throw new RootfsError(
      `setting owners in the root filesystem failed: ${complaints.slice(0, 3).join('; ')}`,
    );
}

/**
 * Returns the read-only ext4 base for an image, building it on first use. Cached
 * by the image's config digest; built in a temp dir beside the cache entry and
 * renamed into place, so a failure or a concurrent builder never leaves a
 * half-written base under the final name.
 */
export async function ensureRootfs(
  image: LocalImage,
  cacheDir: string,
  options: { headroomMiB?: number; scratchDir?: string | undefined } = {},
): Promise<{ path: string; cached: boolean }> {
  const target = rootfsPath(cacheDir, image.configDigest);
  if (await stat(target).catch(() => undefined)) return { path: target, cached: true };
  await image.verifyLayers?.();
  await mkdir(path.dirname(target), { recursive: true });
  const work = await mkdtemp(path.join(path.dirname(target), '.build-'));
  let scratchOutside: string | undefined;
  try {
    const scratch = await scratchDir(image, work, options.scratchDir);
    if (scratch !== work) scratchOutside = scratch;
    const tree = path.join(scratch, 'tree');
    // mkfs copies the tree root's mode; mkdtemp's 0700 would lock out non-root services.
    await mkdir(tree);
    await chmod(tree, 0o755);
    const report = await applyLayers(image.layers, tree).catch((error: unknown) => {
      const full = (error as { cause?: { code?: string } }).cause?.code === 'ENOSPC';
      const where = scratch === work ? `the cache dir ${cacheDir}` : scratch;
      const why = `${(error as Error).message}${full ? ` (${where} is full)` : ''}`;
      throw new RootfsError(`cannot build the root filesystem of ${image.name}: ${why}`, { cause: error });
    });
    const sizeMiB = rootfsSizeMiB(await treeBytes(tree), options.headroomMiB);
    const ext4 = path.join(work, 'rootfs.ext4');
    try {
      await run({
        program: 'mkfs.ext4',
        args: [
          '-q',
          '-F',
          '-d',
          tree,
          '-L',
          'rootfs',
          '-E',
          'root_owner=0:0',
          '-m',
          '0',
          ext4,
          `${sizeMiB}M`,
        ],
      });
    } catch (error: unknown) {
      throw new RootfsError(
        `cannot build the root filesystem of ${image.name}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    await fixOwnership(ext4, tree, report);
    await chmod(ext4, 0o444);
    await rename(ext4, target);
    return { path: target, cached: false };
  } finally {
    await rm(work, { recursive: true, force: true });
    if (scratchOutside) await rm(scratchOutside, { recursive: true, force: true });
  }
}

/**
 * What `file` is in an image's ext4 base, read without mounting it:
 * "directory", "regular", "symlink"..., or undefined when it is absent.
 */
export async function rootfsEntryType(base: string, file: string): Promise<string | undefined> {
  const result = await run(
    { program: 'debugfs', args: ['-R', `stat "/${file.replace(/^\/+/, '')}"`, base] },
    { allowFailure: true },
  );
  if (result.exitCode !== 0 || /File not found/.test(result.stderr)) return undefined;
  return /Type: (\w+)/.exec(result.stdout)?.[1];
}
