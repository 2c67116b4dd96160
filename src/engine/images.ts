import { ImageCatalog } from '../images/catalog.js';
import { pruneImages as prune } from '../images/prune.js';
import { ensureRootfs } from '../images/rootfs.js';
import { listContainers } from './container.js';
import type { JobContext } from './context.js';
import type { LocalImage } from '../images/image.js';

/**
 * Resolves `name` on the job's registry terms, with `credentials` (a
 * service's own) or else the host's; the one place pull settings are put together.
 */
export function resolveFor(
  job: JobContext,
  name: string,
  log: (line: string) => void,
  credentials?: { username: string; password: string },
): Promise<LocalImage> {
  return job.resolveImage(name, {
    ...job.settings.registry,
    credentials: credentials ?? job.host.registryCredentials,
    cacheDir: job.cacheDir,
    log,
  });
}

/** Pulls an image into the cache and builds its root filesystem, as a run would. */
export async function pullImage(
  name: string,
  job: JobContext,
  log: (line: string) => void,
): Promise<{ digest: string; rootfs: string; cached: boolean }> {
  const image = await resolveFor(job, name, log);
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
