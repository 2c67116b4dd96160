import { type ErrorKind, HyperError } from '../errors.js';
import { run } from '../process/run.js';

/** Names in an /etc/passwd or /etc/group file (first field of each line). Pure. */
export function accountNames(file: string): Set<string> {
  return new Set(
    file
      .split('\n')
      .map((line) => line.split(':')[0]?.trim() ?? '')
      .filter((name) => name && !name.startsWith('#')),
  );
}

/** Reads a file from an ext4 image without mounting it; undefined when it is absent. */
async function readFromExt4(image: string, file: string): Promise<string | undefined> {
  const result = await run(
    { program: 'debugfs', args: ['-R', `cat ${file}`, image] },
    { allowFailure: true },
  );
  return result.exitCode === 0 && !/File not found/.test(result.stderr) ? result.stdout : undefined;
}

export class UserSpecError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'UserSpecError';
}

/**
 * Checks a USER[:GROUP] spec against the image's own /etc/passwd and /etc/group
 * before anything boots, so a typo fails at once with a clear message. Numbers
 * need no entry, as in Docker.
 */
export async function checkUserSpec(rootfs: string, spec: string, imageName: string): Promise<void> {
  const [user = '', group] = spec.split(':');
  const checks: [string | undefined, string, string][] = [
    [user, '/etc/passwd', 'user'],
    [group, '/etc/group', 'group'],
  ];
  for (const [name, file, what] of checks) {
    if (!name || /^\d+$/.test(name)) continue;
    const content = await readFromExt4(rootfs, file);
    if (content === undefined || !accountNames(content).has(name)) {
      throw new UserSpecError(
        `unable to find ${what} "${name}": no matching entry in ${file} of image ${imageName}`,
      );
    }
  }
}
