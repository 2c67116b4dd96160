import type { VmRecord } from './record.js';
import { ImageCatalog } from '../images/catalog.js';
import { pruneImages as prune } from '../images/prune.js';
import { ensureRootfs } from '../images/rootfs.js';
import { listContainers } from './container.js';
import type { JobContext } from './context.js';
import type { LocalImage } from '../images/image.js';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { HyperError } from '../errors.js';
import type { CatalogEntry } from '../images/catalog.js';
import { formatReference, parseImageReference } from '../images/reference.js';
import { BlobStore } from '../images/store.js';
import type { ImageConfig } from '../types/oci/index.js';

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
  credentials?: { username: string; password: string },
): Promise<{ digest: string; rootfs: string; cached: boolean }> {
  const image = await resolveFor(job, name, log, credentials);
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
  const inUse = new Set((await listContainers(job)).flatMap((s) => imagesOf(s.record)));
  return prune(job.cacheDir, { all, inUse });
}

/** The images a VM uses: its own, and those it mounts (compose `type: image`). Pure. */
function imagesOf(record: Pick<VmRecord, 'image' | 'disks'>): string[] {
  return [record.image, ...(record.disks ?? []).flatMap((disk) => (disk.image ? [disk.image.name] : []))];
}

/** A name as one canonical text (redis -> docker.io/library/redis:latest), so two spellings of one image match. Pure. */
export function canonicalImageName(name: string): string {
  if (name.startsWith('oci:')) return name;
  try {
    return formatReference(parseImageReference(name));
  } catch {
    return name;
  }
}

/** The cached image a reference names: by name (any spelling), or by its id (config digest, or a prefix of it). */
export async function findImage(
  job: Pick<JobContext, 'cacheDir'>,
  ref: string,
): Promise<CatalogEntry | undefined> {
  const entries = await new ImageCatalog(job.cacheDir).list();
  const wanted = canonicalImageName(ref);
  const byName = entries.find((entry) => canonicalImageName(entry.name) === wanted);
  if (byName) return byName;
  const hex = ref.replace(/^sha256:/, '');
  if (!/^[0-9a-f]{4,64}$/.test(hex)) return undefined;
  return entries.find((entry) => entry.configDigest.slice('sha256:'.length).startsWith(hex));
}

/** The image's config (what inspect shows), read from the blob store. */
export async function imageConfig(
  job: Pick<JobContext, 'cacheDir'>,
  entry: CatalogEntry,
): Promise<ImageConfig> {
  const store = new BlobStore(path.join(job.cacheDir, 'store'));
  return JSON.parse(await readFile(store.path(entry.configDigest), 'utf8')) as ImageConfig;
}

/** Forgets a cached image (docker rmi) and reclaims what no other image uses; refused while a VM uses it, unless `force`. */
export async function removeImage(job: JobContext, ref: string, force: boolean): Promise<CatalogEntry> {
  const entry = await findImage(job, ref);
  if (!entry) throw new HyperError(`No such image: ${ref}`, { kind: 'NotFound' });
  const users = (await listContainers(job)).filter((s) =>
    imagesOf(s.record).some((image) => canonicalImageName(image) === canonicalImageName(entry.name)),
  );
  if (users.length > 0 && !force)
    throw new HyperError(
      `conflict: unable to remove repository reference "${ref}" - container ${users[0]?.record.id ?? users[0]?.record.name} is using its referenced image`,
      { kind: 'Conflict' },
    );
  await new ImageCatalog(job.cacheDir).remove(entry.name);
  await prune(job.cacheDir, { all: false, inUse: new Set() });
  return entry;
}
