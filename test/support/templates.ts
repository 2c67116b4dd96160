import { readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { serviceTemplateRoot } from '../../src/engine/service-templates.js';

/** The cache dir the CLI and the action use in tests: HYPER_CACHE_DIR, else the default. */
export function testCacheDir(): string {
  return process.env.HYPER_CACHE_DIR || path.join(os.homedir(), '.cache', 'hyper');
}

/**
 * Removes the service templates kept for these service names, so a test that
 * checks how a service first starts does not resume from one an earlier test
 * (or an earlier run) kept in the shared cache dir.
 */
export async function forgetServiceTemplates(...names: string[]): Promise<void> {
  const root = serviceTemplateRoot(testCacheDir());
  for (const entry of await readdir(root).catch(() => [] as string[])) {
    if (names.some((name) => new RegExp(`^${name}-[0-9a-f]{16}(\\.making-\\d+)?$`).test(entry)))
      await rm(path.join(root, entry), { recursive: true, force: true });
  }
}
