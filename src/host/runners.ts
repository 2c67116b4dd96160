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

/** A directory a runner binds into containers, and whether it binds it read-only. */
export interface RunnerDir {
  dir: string;
  readOnly: boolean;
}

/**
 * The directories a runner binds into containers, from its directory and
 * its `.runner` settings (JSON, as config.sh writes it, a BOM allowed): its
 * work folder (`_work` unless the settings say), read-write, and its
 * `externals`, read-only, as the runner binds them (`/__w`, `/__e:ro`). The
 * settings file is the runner user's to edit, so a work folder outside the
 * runner's directory is not taken from it. Pure.
 */
export function runnerBindDirs(dir: string, settings: string | undefined): RunnerDir[] {
  let work = path.join(dir, '_work');
  try {
    const parsed = JSON.parse((settings ?? '{}').replace(/^\uFEFF/, '')) as { workFolder?: unknown };
    if (typeof parsed.workFolder === 'string' && parsed.workFolder) {
      const wanted = path.resolve(dir, parsed.workFolder);
      const inside = path.relative(dir, wanted);
      if (inside && inside !== '..' && !inside.startsWith('../') && !path.isAbsolute(inside)) work = wanted;
    }
  } catch {
    // Unreadable settings: the runner's default work folder.
  }
  return [
    { dir: work, readOnly: false },
    { dir: path.join(dir, 'externals'), readOnly: true },
  ];
}

/**
 * The work and externals directories of the GitHub Actions runners installed
 * as services on this host (found by their systemd units): what a runner
 * bind-mounts into its job and service containers.
 */
export async function findRunnerBindDirs(
  unitDirs: readonly string[] = SYSTEMD_UNIT_DIRS,
): Promise<RunnerDir[]> {
  const found = new Map<string, RunnerDir>();
  for (const unitDir of unitDirs) {
    const names = await readdir(unitDir).catch(() => [] as string[]);
    for (const name of names.filter((n) => /^actions\.runner\..+\.service$/.test(n))) {
      const unit = await readFile(path.join(unitDir, name), 'utf8').catch(() => undefined);
      const dir = unit === undefined ? undefined : runnerDirOfUnit(unit);
      if (!dir) continue;
      const settings = await readFile(path.join(dir, '.runner'), 'utf8').catch(() => undefined);
      for (const entry of runnerBindDirs(dir, settings)) found.set(entry.dir, entry);
    }
  }
  return [...found.values()];
}
