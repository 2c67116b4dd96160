import * as actionsCache from '@actions/cache';
import * as core from '@actions/core';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readTemplateArchive, writeTemplateArchive } from '../engine/template-archive.js';
import { readCacheArchive, writeCacheArchive, type CachedImage } from '../images/cache-archive.js';
import { ROOTFS_FORMAT } from '../images/rootfs.js';
import { stagingBase } from './environment.js';
import type { ImageCacheState } from './state.js';

/**
 * The `cache` input: pulled blobs, built root filesystems and the services'
 * service templates kept across workflow runs with @actions/cache. Restored
 * before the services boot, saved by the post step when the job's services
 * all came up and the images or templates differ from what was restored. Caching is an optimisation: every failure
 * here is a warning, never a failed job.
 */

export interface CacheKeys {
  /** The key looked up first; never saved, so the lookup always falls to the prefixes. */
  primary: string;
  /** Prefixes tried in order: the same image names, then any. */
  restore: string[];
}

export function shortHash(values: readonly string[]): string {
  return createHash('sha256')
    .update([...new Set(values)].sort().join('\n'))
    .digest('hex')
    .slice(0, 16);
}

function keyBase(): string {
  return `hyper-services-${ROOTFS_FORMAT}-${process.platform}-${process.arch}`;
}

/** Keys to restore with, from the image names the services use. Pure. */
export function restoreKeys(imageNames: readonly string[]): CacheKeys {
  const names = `${keyBase()}-${shortHash(imageNames)}`;
  return { primary: names, restore: [`${names}-`, `${keyBase()}-`] };
}

/** The key to save under: the image names, then exactly which images and service templates they were. Pure. */
export function saveKey(
  imageNames: readonly string[],
  images: readonly CachedImage[],
  templates: readonly string[] = [],
): string {
  const content = [...images.flatMap((image) => [image.configDigest, ...image.blobs]), ...templates];
  return `${restoreKeys(imageNames).primary}-${shortHash(content)}`;
}

/**
 * Where the archive is staged. @actions/cache versions an entry by its paths,
 * so this must be the same path in every run: RUNNER_TEMP is.
 */
function archiveDir(cacheDir: string): string {
  return path.join(stagingBase(cacheDir), 'hyper-services-cache');
}

/**
 * Runs an @actions/cache call with RUNNER_TEMP pointed at a dir of our own,
 * removed afterwards: the library leaves the empty dirs it made its archives in.
 */
export async function inScratchTemp<T>(call: () => Promise<T>): Promise<T> {
  const original = process.env.RUNNER_TEMP;
  const scratch = await mkdtemp(path.join(original ?? os.tmpdir(), 'hyper-cache-tmp-'));
  process.env.RUNNER_TEMP = scratch;
  try {
    return await call();
  } finally {
    if (original === undefined) delete process.env.RUNNER_TEMP;
    else process.env.RUNNER_TEMP = original;
    await rm(scratch, { recursive: true, force: true });
  }
}

function warn(what: string, error: unknown): void {
  core.warning(`${what}: ${(error as Error).message}`);
}

/** Restores the cache for these images; returns the key that matched, if any. */
export async function restoreImageCache(
  imageNames: readonly string[],
  cacheDir: string,
): Promise<string | undefined> {
  if (!actionsCache.isFeatureAvailable()) {
    core.info('Image cache: the Actions cache service is not available to this job; skipped');
    return undefined;
  }
  const keys = restoreKeys(imageNames);
  const dir = archiveDir(cacheDir);
  const started = Date.now();
  try {
    const matched = await inScratchTemp(() => actionsCache.restoreCache([dir], keys.primary, keys.restore));
    if (!matched) {
      core.info('Image cache: nothing restored; the images are pulled');
      return undefined;
    }
    const report = await readCacheArchive(dir, cacheDir);
    const templates = await readTemplateArchive(dir, cacheDir, report.imported);
    for (const reason of [...report.skipped, ...templates.skipped])
      core.warning(`Image cache: left out ${reason}`);
    core.info(
      `Image cache: restored ${report.blobs} blob(s), ${report.rootfs} root filesystem(s) and ${templates.templates} service template(s) from ${matched} in ${Date.now() - started} ms`,
    );
    return matched;
  } catch (error: unknown) {
    warn('Image cache: restore failed', error);
    return undefined;
  } finally {
    await rm(dir, { recursive: true, force: true }).catch((error: unknown) =>
      warn(`Image cache: could not remove ${dir}`, error),
    );
  }
}

/** Saves what these images and templates need, unless the entry restored was already exactly that. */
export async function saveImageCache(state: ImageCacheState, cacheDir: string): Promise<void> {
  const { names: imageNames, images, templates: templateNames, restoredKey } = state;
  const key = saveKey(imageNames, images, templateNames);
  if (key === restoredKey) {
    core.info(`Image cache: ${key} is up to date; not saved again`);
    return;
  }
  if (!actionsCache.isFeatureAvailable()) {
    core.info('Image cache: the Actions cache service is not available to this job; not saved');
    return;
  }
  const dir = archiveDir(cacheDir);
  const started = Date.now();
  try {
    const report = await writeCacheArchive(cacheDir, images, dir);
    const templates = await writeTemplateArchive(cacheDir, templateNames, dir);
    for (const reason of [...report.skipped, ...templates.skipped])
      core.info(`Image cache: left out ${reason}`);
    const id = await inScratchTemp(() => actionsCache.saveCache([dir], key));
    if (id !== -1) {
      core.info(
        `Image cache: saved ${report.blobs} blob(s), ${report.rootfs} root filesystem(s) and ${templates.templates} service template(s) as ${key} in ${Date.now() - started} ms`,
      );
    }
  } catch (error: unknown) {
    warn('Image cache: save failed', error);
  } finally {
    await rm(dir, { recursive: true, force: true }).catch((error: unknown) =>
      warn(`Image cache: could not remove ${dir}`, error),
    );
  }
}
