import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

/** Where `svc.sh install` puts a runner's unit (actions.runner.OWNER-REPO.NAME.service). */
export const SYSTEMD_UNIT_DIRS = ['/etc/systemd/system'];

/** The runner directory a unit runs from: its WorkingDirectory, else the directory of its ExecStart (runsvc.sh). Pure. */
export function runnerDirOfUnit(unit: string): string | undefined {
  const value = (key: string): string | undefined =>
    new RegExp(`^\\s*${key}\\s*=\\s*(.+?)\\s*$`, 'm').exec(unit)?.[1];
  const working = value('WorkingDirectory');
  if (working?.startsWith('/')) return path.normalize(working);
  const program = value('ExecStart')
    ?.replace(/^[-@:+!]+/, '')
    .split(/\s+/)[0];
  return program?.startsWith('/') ? path.dirname(path.normalize(program)) : undefined;
}

/**
 * The directories a runner binds into containers, from its directory and
 * its `.runner` settings (JSON, as config.sh writes it, a BOM allowed): its
 * work folder (`_work` unless the settings say) and its `externals`. Pure.
 */
export function runnerBindDirs(dir: string, settings: string | undefined): string[] {
  let work = '_work';
  try {
    const parsed = JSON.parse((settings ?? '{}').replace(/^\uFEFF/, '')) as { workFolder?: unknown };
    if (typeof parsed.workFolder === 'string' && parsed.workFolder) work = parsed.workFolder;
  } catch {
    // Unreadable settings: the runner's default work folder.
  }
  return [path.resolve(dir, work), path.join(dir, 'externals')];
}

/**
 * The work and externals directories of the GitHub Actions runners installed
 * as services on this host (found by their systemd units): what a runner
 * bind-mounts into its job and service containers.
 */
export async function findRunnerBindDirs(unitDirs: readonly string[] = SYSTEMD_UNIT_DIRS): Promise<string[]> {
  const found: string[] = [];
  for (const unitDir of unitDirs) {
    const names = await readdir(unitDir).catch(() => [] as string[]);
    for (const name of names.filter((n) => /^actions\.runner\..+\.service$/.test(n))) {
      const unit = await readFile(path.join(unitDir, name), 'utf8').catch(() => undefined);
      const dir = unit === undefined ? undefined : runnerDirOfUnit(unit);
      if (!dir) continue;
      const settings = await readFile(path.join(dir, '.runner'), 'utf8').catch(() => undefined);
      found.push(...runnerBindDirs(dir, settings));
    }
  }
  return [...new Set(found)];
}
