import { readFile } from 'node:fs/promises';

/** A /proc/sys on/off value: "1\n" is true, "0\n" false; anything else, or no text, undefined. Pure. */
export function parseSysctlFlag(text: string | undefined): boolean | undefined {
  const value = text?.trim();
  if (value === '1') return true;
  if (value === '0') return false;
  return undefined;
}

/** Reads a /proc/sys on/off value; undefined when it cannot be read (no /proc, hidden in a container). */
export async function readSysctlFlag(file: string): Promise<boolean | undefined> {
  return parseSysctlFlag(await readFile(file, 'utf8').catch(() => undefined));
}

/**
 * Why a /proc/sys file could not be written, from the error's code or, for a
 * `sysctl -w` through sudo, its message: "is read-only here (EROFS)", ...
 * Pure.
 */
export function sysctlWriteProblem(
  file: string,
  error: { code?: string | undefined; message: string },
): string {
  const code =
    error.code ??
    (/Read-only file system/i.test(error.message)
      ? 'EROFS'
      : /Operation not permitted/i.test(error.message)
        ? 'EPERM'
        : /Permission denied/i.test(error.message)
          ? 'EACCES'
          : /No such file or directory|cannot stat/i.test(error.message)
            ? 'ENOENT'
            : undefined);
  switch (code) {
    case 'EROFS':
      return `${file} is read-only here (EROFS), as /proc/sys is in most containers`;
    case 'EPERM':
    case 'EACCES':
    case 'EIO':
      return `${file} cannot be written by this process (${code}): a container's network namespace may need its sysctls set from outside`;
    case 'ENOENT':
      return `${file} does not exist (no /proc/sys, or no IPv4 in this network namespace)`;
    default:
      return `${file} could not be written: ${error.message.trim().split('\n')[0] ?? ''}`;
  }
}
