import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { serviceTemplateRoot } from '../../src/engine/service-templates.js';
import { cacheDir } from './dirs.js';

/**
 * Removes the service templates kept for these service names (all of them
 * when none is named), so a test that checks how a service first starts
 * does not resume from one an earlier test file, or an earlier run, kept in
 * the shared cache dir. VMs resumed from one keep their mapping of its RAM.
 */
export async function forgetServiceTemplates(...names: string[]): Promise<void> {
  const root = serviceTemplateRoot(cacheDir());
  for (const entry of await readdir(root).catch(() => [] as string[])) {
    const service = /^(.+)-[0-9a-f]{16}(\.making-\d+)?$/.exec(entry)?.[1];
    if (service !== undefined && (names.length === 0 || names.includes(service)))
      await rm(path.join(root, entry), { recursive: true, force: true });
  }
}
