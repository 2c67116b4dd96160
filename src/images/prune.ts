import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { ImageCatalog } from './catalog.js';
import { rootfsPath } from './rootfs.js';
import { BlobStore } from './store.js';

/** Leftovers younger than this may belong to a pull still running in another job. */
const STALE_MS = 60 * 60 * 1000;

export interface PruneResult {
  removedImages: string[];
  removedFiles: number;
  reclaimedBytes: number;
}

async function walk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const files: string[] = [];
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory() && !entry.name.startsWith('.build-')) files.push(...(await walk(full)));
    else files.push(full);
  }
  return files;
}

/**
 * Removes cached blobs and root filesystems that no catalog entry names, and
 * stale temp files of interrupted pulls. With `all`, first forgets every
 * image not in `inUse` (the images of existing VMs).
 */
export async function pruneImages(
  cacheDir: string,
  options: { all: boolean; inUse: ReadonlySet<string> },
): Promise<PruneResult> {
  const catalog = new ImageCatalog(cacheDir);
  const result: PruneResult = { removedImages: [], removedFiles: 0, reclaimedBytes: 0 };
  if (options.all) {
    for (const entry of await catalog.list()) {
      if (options.inUse.has(entry.name)) continue;
      await catalog.remove(entry.name);
      result.removedImages.push(entry.name);
    }
  }
  const kept = await catalog.list();
  const store = new BlobStore(path.join(cacheDir, 'store'));
  const keep = new Set<string>();
  for (const entry of kept) {
    for (const digest of entry.blobs) keep.add(store.path(digest));
    keep.add(rootfsPath(cacheDir, entry.configDigest));
  }
  const candidates = [
    ...(await walk(path.join(cacheDir, 'store', 'blobs'))),
    ...(await walk(path.join(cacheDir, 'rootfs'))),
  ];
  const now = Date.now();
  for (const file of candidates) {
    if (keep.has(file)) continue;
    const info = await stat(file).catch(() => undefined);
    if (!info) continue;
    const temporary = file.endsWith('.partial') || path.basename(file).startsWith('.build-');
    if (temporary && now - info.mtimeMs < STALE_MS) continue;
    await rm(file, { recursive: true, force: true });
    result.removedFiles++;
    result.reclaimedBytes += info.isDirectory() ? 0 : info.blocks * 512;
  }
  return result;
}
