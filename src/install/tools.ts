import { type ErrorKind, HyperError } from '../errors.js';
import { isRoot as runningAsRoot, probeSudo } from '../host/user.js';
import { onPath, run } from '../process/run.js';

/** A program the host needs and the Debian/Ubuntu package that provides it. */
export interface HostTool {
  program: string;
  aptPackage: string;
}

/** What booting VMs needs; `qemu` is the qemu-system binary in use. */
export const vmTools = (qemu: string): HostTool[] => [
  { program: qemu, aptPackage: 'qemu-system-x86' },
  { program: 'qemu-img', aptPackage: 'qemu-utils' },
  { program: 'mkfs.ext4', aptPackage: 'e2fsprogs' },
  { program: 'debugfs', aptPackage: 'e2fsprogs' },
  { program: 'zstd', aptPackage: 'zstd' },
];

/** What guest/build.sh needs when no prebuilt guest bundle can be had. */
export const GUEST_BUILD_TOOLS: HostTool[] = [
  { program: 'apt-get', aptPackage: 'apt' },
  { program: 'dpkg-deb', aptPackage: 'dpkg' },
  { program: 'depmod', aptPackage: 'kmod' },
  { program: 'gcc', aptPackage: 'gcc' },
  { program: 'readelf', aptPackage: 'binutils' },
  { program: 'cpio', aptPackage: 'cpio' },
  { program: 'gzip', aptPackage: 'gzip' },
  { program: 'xz', aptPackage: 'xz-utils' },
  { program: 'zstd', aptPackage: 'zstd' },
  { program: 'lz4', aptPackage: 'lz4' },
];

export class MissingToolsError extends HyperError {
  static override defaultKind: ErrorKind = 'Unavailable';
  override name = 'MissingToolsError';
}

export function describeTools(tools: readonly HostTool[]): string {
  return tools.map((t) => `${t.program} (package ${t.aptPackage})`).join(', ');
}

async function missingTools(tools: readonly HostTool[]): Promise<HostTool[]> {
  const missing: HostTool[] = [];
  for (const tool of tools) if (!(await onPath(tool.program))) missing.push(tool);
  return missing;
}

/** The apt-get command line, through sudo when not root. Pure. */
export function aptCommand(args: string[], isRoot: boolean): { program: string; args: string[] } {
  const apt = ['apt-get', ...args];
  return isRoot
    ? { program: apt[0] as string, args: apt.slice(1) }
    : { program: 'sudo', args: ['-n', ...apt] };
}

/**
 * Makes sure each tool is on PATH, installing the missing ones with apt-get
 * (through sudo when not root). Without apt-get, or neither root nor
 * passwordless sudo, fails naming every missing tool.
 */
export async function ensureTools(tools: readonly HostTool[], log: (line: string) => void): Promise<void> {
  const missing = await missingTools(tools);
  if (missing.length === 0) return;
  if (!(await onPath('apt-get'))) {
    throw new MissingToolsError(
      `missing host tools: ${describeTools(missing)}. There is no apt-get here to install them: install them with your package manager.`,
    );
  }
  const isRoot = runningAsRoot();
  const packages = [...new Set(missing.map((t) => t.aptPackage))];
  if (!isRoot) {
    const sudo = await probeSudo();
    if (!sudo.usable) {
      throw new MissingToolsError(
        `missing host tools: ${describeTools(missing)}. Not running as root, and ${sudo.reason}, so apt-get cannot install them: run "apt-get install ${packages.join(' ')}" as root, or run this as root.`,
      );
    }
  }
  log(`Installing ${packages.join(' ')} with apt-get`);
  const env = { DEBIAN_FRONTEND: 'noninteractive' };
  try {
    await run({ ...aptCommand(['update', '-q'], isRoot), env });
    await run({
      ...aptCommand(['install', '-y', '-q', '--no-install-recommends', ...packages], isRoot),
      env,
    });
  } catch (error: unknown) {
    throw new MissingToolsError(`cannot install ${packages.join(' ')}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const still = await missingTools(missing);
  if (still.length)
    throw new MissingToolsError(`still missing after apt-get install: ${describeTools(still)}`);
}
