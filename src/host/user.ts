import { readFile } from 'node:fs/promises';
import { run, trimOutput } from '../process/run.js';

/** True when this process runs as uid 0 (false where the platform has no uids). */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/**
 * Whether a /proc/self/uid_map text maps all 2^32 ids straight through: the
 * host's own user namespace. Root in a smaller map (rootless Podman or Docker,
 * userns-remap) cannot chown to ids outside it nor make device nodes. No text
 * (a kernel without user namespaces) means the host's. Pure.
 */
export function mapsAllIds(idMap: string | undefined): boolean {
  if (idMap === undefined) return true;
  return idMap
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .some(([inside, outside, count]) => inside === '0' && outside === '0' && count === '4294967295');
}

/** Root of the host's user namespace: can give files any owner and make device nodes. */
export async function ownsAllIds(): Promise<boolean> {
  if (!isRoot()) return false;
  return mapsAllIds(await readFile('/proc/self/uid_map', 'utf8').catch(() => undefined));
}

export type SudoAnswer = { usable: true } | { usable: false; reason: string };

/** What `sudo -n true` ended with: its exit code and stderr, or why it could not start (ENOENT...). */
export type SudoProbe = { exitCode: number; stderr: string } | { startError: string };

/**
 * Whether passwordless sudo works, from what `sudo -n true` said; the reason
 * completes "not running as root, and ...". Pure.
 */
export function readSudoProbe(probe: SudoProbe): SudoAnswer {
  if ('startError' in probe) {
    return {
      usable: false,
      reason:
        probe.startError === 'ENOENT' ? 'sudo is not installed' : `sudo cannot be run (${probe.startError})`,
    };
  }
  if (probe.exitCode === 0) return { usable: true };
  const said = probe.stderr;
  if (/password is required|a terminal is required/i.test(said))
    return { usable: false, reason: 'sudo asks for a password' };
  if (/not in the sudoers|not allowed to|may not run sudo/i.test(said))
    return { usable: false, reason: 'sudo does not allow this user' };
  if (/no new privileges/i.test(said))
    return {
      usable: false,
      reason: 'sudo cannot raise privileges here: the "no new privileges" flag is set (a container setting)',
    };
  if (/effective uid is not 0|nosuid/i.test(said))
    return {
      usable: false,
      reason: 'sudo cannot raise privileges here: it is not setuid root (a nosuid mount or a container)',
    };
  const line = said.split('\n').find((l) => l.trim() !== '');
  return { usable: false, reason: `sudo -n true failed (${line?.trim() ?? `exit code ${probe.exitCode}`})` };
}

/** Runs `sudo -n true` and reads the answer; never throws. */
export async function probeSudo(): Promise<SudoAnswer> {
  try {
    const result = await run({ program: 'sudo', args: ['-n', 'true'] }, { allowFailure: true });
    return readSudoProbe(result);
  } catch (error: unknown) {
    // Not started (or killed): the message names ENOENT when there is no sudo at all.
    const text = error instanceof Error ? error.message : String(error);
    return readSudoProbe({ startError: /\bENOENT\b/.test(text) ? 'ENOENT' : trimOutput(text, 1) });
  }
}
