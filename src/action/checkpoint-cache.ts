import * as actionsCache from '@actions/cache';
import * as core from '@actions/core';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { BootContext } from '../engine/context.js';
import type { Job } from '../engine/job.js';
import { guestCpu, qemuVersion } from '../engine/snapshots.js';
import { inScratchTemp, shortHash } from './cache.js';
import { stagingBase } from './environment.js';

/**
 * The `checkpoint-key` input: a named snapshot of each service carried to
 * later workflow runs through @actions/cache. The post step exports every
 * service's snapshot `checkpoint-name` (one hyper export file each) and saves
 * them under the key; the main step of a later run restores them and starts
 * those services from them instead of booting and seeding. As with the image
 * cache, a failure here is a warning and the services boot normally.
 */

export interface CheckpointKeys {
  /** Saved under: the user's key, then what a checkpoint needs to load (bundle, QEMU, accel, CPU). */
  key: string;
  /** Looked up after the exact key: the user's key made on any host, refused with a message if unfit. */
  restore: string[];
}

/** The keys for a user's checkpoint key on this host. */
export async function checkpointKeys(userKey: string, host: BootContext): Promise<CheckpointKeys> {
  const base = `hyper-checkpoint-v2-${process.platform}-${process.arch}-${shortHash([userKey])}`;
  const fit = shortHash([
    [
      host.bundle.version,
      await qemuVersion(host),
      host.accel,
      await guestCpu(host.accel, host.cpuModel),
    ].join('\n'),
  ]);
  return { key: `${base}-${fit}`, restore: [`${base}-`] };
}

/** Where the exports are staged: a fixed path, as @actions/cache versions an entry by its paths. */
function stagingDir(cacheDir: string): string {
  return path.join(stagingBase(cacheDir), 'hyper-services-checkpoints');
}

export interface RestoredCheckpoints {
  key: string;
  /** Export file by service name. */
  files: Record<string, string>;
  /** Removes the restored files once the services are up. */
  cleanup(): Promise<void>;
}

/** Restores the entry for `keys`; undefined when there is none (or the cache fails, with a warning). */
export async function restoreCheckpoints(
  keys: CheckpointKeys,
  cacheDir: string,
): Promise<RestoredCheckpoints | undefined> {
  if (!actionsCache.isFeatureAvailable()) {
    core.info('Checkpoint cache: the Actions cache service is not available to this job; skipped');
    return undefined;
  }
  const dir = stagingDir(cacheDir);
  const cleanup = () =>
    rm(dir, { recursive: true, force: true }).catch((error: unknown) =>
      core.warning(`Checkpoint cache: could not remove ${dir}: ${(error as Error).message}`),
    );
  try {
    const started = Date.now();
    const matched = await inScratchTemp(() => actionsCache.restoreCache([dir], keys.key, keys.restore));
    if (!matched) {
      core.info('Checkpoint cache: no saved checkpoint for this key; the services boot normally');
      return undefined;
    }
    const files: Record<string, string> = {};
    for (const entry of await readdir(dir)) {
      if (entry.endsWith('.tar')) files[entry.slice(0, -'.tar'.length)] = path.join(dir, entry);
    }
    core.info(
      `Checkpoint cache: restored ${Object.keys(files).join(', ') || 'nothing'} from ${matched} in ${Date.now() - started} ms`,
    );
    return { key: matched, files, cleanup };
  } catch (error: unknown) {
    core.warning(`Checkpoint cache: restore failed: ${(error as Error).message}`);
    await cleanup();
    return undefined;
  }
}

/** Exports every service's snapshot `name` and saves them under `key`, unless `key` was the one restored. */
export async function saveCheckpoints(
  keyToSave: string,
  name: string,
  restoredKey: string | undefined,
  job: Job,
): Promise<void> {
  if (keyToSave === restoredKey) {
    core.info(`Checkpoint cache: ${keyToSave} was restored and is up to date; not saved again`);
    return;
  }
  const services = (await job.snapshots(undefined))
    .filter((row) => row.snapshot.name === name)
    .map((row) => row.service);
  if (services.length === 0) {
    core.info(`Checkpoint cache: no service has a snapshot named "${name}"; nothing to save`);
    return;
  }
  if (!actionsCache.isFeatureAvailable()) {
    core.info('Checkpoint cache: the Actions cache service is not available to this job; not saved');
    return;
  }
  const dir = stagingDir(job.context.cacheDir);
  const started = Date.now();
  try {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    for (const service of services) await job.export(service, name, path.join(dir, `${service}.tar`));
    const id = await inScratchTemp(() => actionsCache.saveCache([dir], keyToSave));
    if (id !== -1) {
      core.info(
        `Checkpoint cache: saved "${name}" of ${services.join(', ')} as ${keyToSave} in ${Date.now() - started} ms`,
      );
    }
  } catch (error: unknown) {
    core.warning(`Checkpoint cache: save failed: ${(error as Error).message}`);
  } finally {
    await rm(dir, { recursive: true, force: true }).catch((error: unknown) =>
      core.warning(`Checkpoint cache: could not remove ${dir}: ${(error as Error).message}`),
    );
  }
}
