/** A small tmpfs mounted by the test itself, to run out of disk space on purpose (needs root). */
import { run } from '../../../src/process/run.js';

export interface MountedTmpfs {
  dir: string;
  /** Unmounts it; idempotent. */
  unmount(): Promise<void>;
}

export async function mountTmpfs(dir: string, sizeMiB: number): Promise<MountedTmpfs> {
  await run({ program: 'mount', args: ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0755`, 'tmpfs', dir] });
  let mounted = true;
  return {
    dir,
    unmount: async () => {
      if (!mounted) return;
      await run({ program: 'umount', args: [dir] });
      mounted = false;
    },
  };
}
