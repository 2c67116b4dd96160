import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { readStateFile, withDirLock, writeFileAtomic } from '../files.js';
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
  return withDirLock(
    lock,
    {
      staleMs: 120_000,
      pollMs: 50,
      timeoutMs: 120_000,
      busy: () =>
        new NetworkError(`the job network is locked by another hyper process (${lock})`, {
          kind: 'Conflict',
        }),
    },
    work,
  );
}
