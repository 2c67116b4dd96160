import { mkdir, mkdtemp, rename, rm, stat, chmod } from 'node:fs/promises';
import path from 'node:path';
import { run } from '../process/run.js';
import type { LocalImage } from './image.js';
import { applyLayers } from './layers.js';

/** Bump when the way a base is built changes, so old bases are not reused. */
const ROOTFS_FORMAT = 'v1';
const MiB = 1024 * 1024;
/** Free space the service gets on its root filesystem (the qcow2 overlay grows into it lazily). */
export const DEFAULT_HEADROOM_MIB = 1024;

export class RootfsError extends Error {
  override name = 'RootfsError';
}

export function rootfsPath(cacheDir: string, configDigest: string): string {
  return path.join(cacheDir, 'rootfs', ROOTFS_FORMAT, `${configDigest.replace(':', '-')}.ext4`);
}

/** Size of the ext4 image for a tree of `contentBytes`: content, ext4 overhead, then headroom. Pure. */
export function rootfsSizeMiB(contentBytes: number, headroomMiB = DEFAULT_HEADROOM_MIB): number {
  return Math.ceil((contentBytes * 1.25) / MiB) + 64 + headroomMiB;
}

async function treeBytes(dir: string): Promise<number> {
  const { stdout } = await run({ program: 'du', args: ['-s', '-B1', '--apparent-size', dir] });
  return Number.parseInt(stdout, 10);
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
  options: { headroomMiB?: number } = {},
): Promise<{ path: string; cached: boolean }> {
  const target = rootfsPath(cacheDir, image.configDigest);
  if (await stat(target).catch(() => undefined)) return { path: target, cached: true };
  await mkdir(path.dirname(target), { recursive: true });
  const work = await mkdtemp(path.join(path.dirname(target), '.build-'));
  try {
    const tree = path.join(work, 'tree');
    await mkdir(tree);
    await applyLayers(image.layers, tree);
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
      throw new RootfsError(`cannot build the root filesystem of ${image.name}: ${(error as Error).message}`);
    }
    await chmod(ext4, 0o444);
    await rename(ext4, target);
    return { path: target, cached: false };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
