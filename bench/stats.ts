import os from 'node:os';

/** What every benchmark prints its figures with. */

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] ?? NaN)
    : ((sorted[middle - 1] ?? NaN) + (sorted[middle] ?? NaN)) / 2;
}

/** "1234 ms  [1200 1234 1300]": the median, then every run. */
export function formatRuns(values: readonly number[]): string {
  return `${Math.round(median(values))} ms  [${values.map((v) => Math.round(v)).join(' ')}]`;
}

/** "2 cores, 23.5 GiB, <CPU model>": the machine the figures were taken on. */
export function machineLine(): string {
  const cpus = os.cpus();
  return `${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${cpus[0]?.model ?? '?'}`;
}
