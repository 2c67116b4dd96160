import { readdir, readFile } from 'node:fs/promises';

/** The pid in a pidfile, or undefined when there is none. */
export async function readPid(pidFile: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt((await readFile(pidFile, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * True while `pid` is a live process whose command line mentions `marker` (the
 * VM's state dir), so a recycled pid is never taken for our VM. A zombie has an
 * empty command line and counts as gone.
 */
export async function isOurProcess(pid: number, marker: string): Promise<boolean> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(marker);
  } catch {
    return false;
  }
}

/** Whether a process with this pid exists (any owner). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error: unknown) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Waits until process `pid` (ours while its command line mentions `marker`)
 * has exited and let go of its files. A process loses its command line when
 * its memory goes, before its files are closed: QEMU killed with SIGKILL can
 * still hold its disk images' locks then, and a `qemu-img` run at once fails
 * to get them. So it counts as gone only once it is reaped, or is a zombie
 * whose threads have all exited (or the pid is another process's by now).
 */
export async function waitForExit(pid: number, marker: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const started = (await procStat(pid))?.startTime;
  for (;;) {
    if (!(await isOurProcess(pid, marker)) && (await released(pid, started))) return true;
    if (Date.now() >= deadline) return false;
    await sleep(25);
  }
}

/**
 * Stops our process `pid` (its command line mentions `marker`, so a
 * recycled pid is never signalled): SIGTERM, then SIGKILL once `graceMs`
 * has passed. Says how it ended; fails when it outlives the SIGKILL by
 * `killWaitMs`.
 */
export async function terminate(
  pid: number,
  marker: string,
  graceMs: number,
  killWaitMs = graceMs,
): Promise<'already gone' | 'stopped' | 'killed'> {
  if (!(await isOurProcess(pid, marker))) return 'already gone';
  if (!signal(pid, 'SIGTERM')) return 'already gone';
  if (await waitForExit(pid, marker, graceMs)) return 'stopped';
  if (signal(pid, 'SIGKILL') && !(await waitForExit(pid, marker, killWaitMs)))
    throw new Error(`process ${pid} is still running after SIGKILL`);
  return 'killed';
}

/** Sends `name` to `pid` alone; false when it was already gone. */
function signal(pid: number, name: NodeJS.Signals): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/** State and start time (in clock ticks since boot) from /proc/PID/stat's text. Pure. */
export function parseProcStat(stat: string): { state: string; startTime: string } {
  // The command name, in parentheses, may hold spaces: fields are counted after its end.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', startTime: fields[19] ?? '' };
}

async function procStat(pid: number): Promise<{ state: string; startTime: string } | undefined> {
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Whether a process whose stat is `stat` (undefined: no such pid) and which
 * has `threads` threads has let go of its files, given the start time it had
 * while it was ours. Pure.
 */
export function hasReleased(
  stat: { state: string; startTime: string } | undefined,
  threads: number,
  startTime: string | undefined,
): boolean {
  if (!stat || (startTime !== undefined && stat.startTime !== startTime)) return true;
  return stat.state === 'Z' && threads <= 1;
}

async function released(pid: number, startTime: string | undefined): Promise<boolean> {
  const stat = await procStat(pid);
  const threads = stat ? (await readdir(`/proc/${pid}/task`).catch(() => [])).length : 0;
  return hasReleased(stat, threads, startTime);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
