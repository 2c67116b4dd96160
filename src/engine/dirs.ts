import os from 'node:os';
import path from 'node:path';

/** Where VMs keep their state: HYPER_STATE_DIR, else the XDG state dir. */
export function stateDir(): string {
  if (process.env.HYPER_STATE_DIR) return path.resolve(process.env.HYPER_STATE_DIR);
  const base = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'hyper');
}

/** Where built things are cached across runs (blobs, root filesystems, guest bundles). */
export function cacheDir(): string {
  if (process.env.HYPER_CACHE_DIR) return path.resolve(process.env.HYPER_CACHE_DIR);
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'hyper');
}

export function vmDir(name: string): string {
  return path.join(stateDir(), 'vms', name);
}
