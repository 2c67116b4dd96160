import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { waitForExit } from '../process/pids.js';

/** The state dir of a hyper-services VM from its QEMU command line (NUL-separated), or undefined. Pure. */
export function vmDirOfCmdline(cmdline: string): string | undefined {
  const args = cmdline.split('\0');
  if (!args[0]?.includes('qemu-system') || !args.some((a) => a.startsWith('name=opt/hyper/settings,')))
    return undefined;
  const pidfile = args[args.indexOf('-pidfile') + 1];
  return pidfile && args.includes('-pidfile') ? path.dirname(pidfile) : undefined;
}

/**
 * Kills the VMs of jobs that are gone: a job that crashed on a self-hosted
 * runner leaves QEMU running, but the runner empties its RUNNER_TEMP, so such
 * a VM's state dir no longer exists. A VM whose state dir exists belongs to a
 * live job (or a terminal user) and is left alone.
 */
export async function pruneOrphanVms(log: (line: string) => void): Promise<number> {
  let killed = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const dir = vmDirOfCmdline(cmdline);
    if (!dir || (await stat(dir).catch(() => undefined))) continue;
    const pid = Number(entry);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      continue; // Not ours to kill, or already gone.
    }
    await waitForExit(pid, dir, 5000);
    log(`killed VM process ${pid} left behind by an earlier job (its state dir ${dir} is gone)`);
    killed++;
  }
  return killed;
}
