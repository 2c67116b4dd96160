import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { serviceTemplateRoot } from '../../src/engine/service-templates.js';
import { isAlive } from '../../src/process/pids.js';
import { cacheDir } from './dirs.js';

/**
 * Removes the service templates kept for these service names (all of them
 * when none is named), so a test that checks how a service first starts
 * does not resume from one an earlier test file, or an earlier run, kept in
 * the shared cache dir. VMs resumed from one keep their mapping of its RAM.
 * One that another live process is making (a test run beside this one) is
 * left to it.
 */
export async function forgetServiceTemplates(...names: string[]): Promise<void> {
  const root = serviceTemplateRoot(cacheDir());
  for (const entry of await readdir(root).catch(() => [] as string[])) {
    const [, service, maker] = /^(.+)-[0-9a-f]{16}(?:\.making-(\d+))?$/.exec(entry) ?? [];
    if (maker !== undefined && Number(maker) !== process.pid && isAlive(Number(maker))) continue;
    if (service !== undefined && (names.length === 0 || names.includes(service)))
      await rm(path.join(root, entry), { recursive: true, force: true });
  }
}

/** The boot templates in cache dir `cache` (their directories, without the locks beside them), by name. */
export async function bootTemplates(cache: string): Promise<string[]> {
  const root = path.join(cache, 'templates', 'boot');
  return (await readdir(root).catch(() => [] as string[])).filter((name) => !name.endsWith('.lock'));
}
