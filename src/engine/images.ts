import { ImageCatalog } from '../images/catalog.js';
import { pruneImages as prune } from '../images/prune.js';
import { ensureRootfs } from '../images/rootfs.js';
import { listContainers } from './container.js';
import type { JobContext } from './dirs.js';

/** Pulls an image into the cache and builds its root filesystem, as a run would. */
export async function pullImage(
  name: string,
  job: JobContext,
  log: (line: string) => void,
): Promise<{ digest: string; rootfs: string; cached: boolean }> {
  const registry = { ...job.settings.registry, credentials: job.host.registryCredentials };
  const image = await job.resolveImage(name, { ...registry, cacheDir: job.cacheDir, log });
  const base = await ensureRootfs(image, job.cacheDir, { scratchDir: job.host.buildScratchDir });
  return { digest: image.manifestDigest, rootfs: base.path, cached: base.cached };
}

/** The cached images, with whether each has a root filesystem built. */
export async function listImages(job: Pick<JobContext, 'cacheDir'>) {
  const catalog = new ImageCatalog(job.cacheDir);
  const rows = [];
  for (const entry of await catalog.list()) rows.push({ ...entry, rootfs: await catalog.hasRootfs(entry) });
  return rows;
}

/** Removes cached images no VM of this job uses (every one with `all`; else only untagged leftovers). */
export async function pruneImages(job: JobContext, all: boolean): ReturnType<typeof prune> {
  const inUse = new Set((await listContainers(job)).map((s) => s.record.image));
  return prune(job.cacheDir, { all, inUse });
}
