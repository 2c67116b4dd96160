import { mkdir, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { readStateFile, writeFileAtomic } from '../files.js';
import type { NetworkRecord } from './driver.js';
import { NetworkError } from './settings.js';

export function networkFile(stateDir: string): string {
  return path.join(stateDir, 'network.json');
}

/**
 * The job network's record; undefined when there is none. A damaged one is an
 * error, never a reason to make a second network beside the first.
 */
export async function readNetwork(stateDir: string): Promise<NetworkRecord | undefined> {
  return readStateFile<NetworkRecord>(
    networkFile(stateDir),
    '"hyper down" still stops the VMs; then remove the bridge hy<id> and the firewall table ' +
      'or chains hyper-<id> it made, if any, by hand, and delete the file',
  );
}

export async function writeNetwork(stateDir: string, record: NetworkRecord): Promise<void> {
  await writeFileAtomic(networkFile(stateDir), JSON.stringify(record, null, 2));
}

/** Serializes changes to one job's network between hyper processes. */
export async function withLock<T>(stateDir: string, work: () => Promise<T>): Promise<T> {
  const lock = path.join(stateDir, 'network.lock');
  await mkdir(stateDir, { recursive: true });
  for (let waited = 0; ; waited += 50) {
    try {
      await mkdir(lock);
      break;
    } catch (error: unknown) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const age = Date.now() - ((await stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now());
      // A lock this old was left by a process that died holding it.
      if (age > 120_000) await rmdir(lock).catch(() => undefined);
      if (waited > 120_000)
        throw new NetworkError(`the job network is locked by another hyper process (${lock})`, {
          kind: 'Conflict',
        });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  try {
    return await work();
  } finally {
    await rmdir(lock).catch(() => undefined);
  }
}
