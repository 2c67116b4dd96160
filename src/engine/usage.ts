import { readFile } from 'node:fs/promises';
import { isOurProcess, readPid } from '../process/pids.js';
import { vmPaths } from '../vm/paths.js';
import type { VmRecord } from './record.js';

/** What one VM has used so far: the per-second accounting hyper.sh billed by. */
export interface VmUsage {
  vmSeconds: number;
  cpuSeconds: number;
  peakMemoryMiB: number;
  /** Now; absent where the kernel has no smaps_rollup. */
  memory?: VmMemory;
}

/**
 * A VM process's memory now, in MiB: resident; proportional (pages shared
 * with other processes, a boot template's among clones, split between
 * them); and its own (anonymous: guest pages it wrote, QEMU's heap and
 * translation cache), what this VM alone costs.
 */
export interface VmMemory {
  rssMiB: number;
  pssMiB: number;
  ownMiB: number;
}

/** Rss, Pss and Anonymous of /proc/PID/smaps_rollup, in MiB. Pure. */
export function parseSmapsRollup(text: string): VmMemory {
  const kib = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  const mib = (value: number): number => Math.round((value / 1024) * 10) / 10;
  return { rssMiB: mib(kib('Rss')), pssMiB: mib(kib('Pss')), ownMiB: mib(kib('Anonymous')) };
}

/** utime + stime (fields 14 and 15) of /proc/PID/stat, in clock ticks. Pure. */
export function cpuTicks(stat: string): number {
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** VmHWM (peak resident set) of /proc/PID/status, in KiB. Pure. */
export function peakRssKiB(status: string): number {
  return Number(/^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 0);
}

/** Linux's USER_HZ, the unit of /proc/PID/stat times, is 100 on every mainstream architecture. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Reads a running VM's usage from its QEMU process; undefined once it is gone. */
export async function readUsage(record: VmRecord): Promise<VmUsage | undefined> {
  const pid = await readPid(vmPaths(record.machine.dir).pid);
  // A jailed QEMU cannot remove its pidfile when it ends: the pid must still be its.
  if (pid === undefined || !(await isOurProcess(pid, record.machine.dir))) return undefined;
  try {
    const [stat, status, rollup] = await Promise.all([
      readFile(`/proc/${pid}/stat`, 'utf8'),
      readFile(`/proc/${pid}/status`, 'utf8'),
      readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => undefined),
    ]);
    return {
      vmSeconds: (Date.now() - Date.parse(record.createdAt)) / 1000,
      cpuSeconds: cpuTicks(stat) / CLOCK_TICKS_PER_SECOND,
      peakMemoryMiB: peakRssKiB(status) / 1024,
      ...(rollup ? { memory: parseSmapsRollup(rollup) } : {}),
    };
  } catch {
    return undefined;
  }
}
