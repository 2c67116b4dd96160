import { SizeError, wholeMiB } from '../sizes.js';
import { volumeBytes } from '../storage/volume-size.js';
import { SpecError } from './container.js';

export const MIN_MEMORY_MIB = 64;

/** Runs a size parser, turning its SizeError into the spec's own error, message unchanged. */
function asSpecError<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error: unknown) {
    if (error instanceof SizeError) throw new SpecError(error.message);
    throw error;
  }
}

/** Docker's memory syntax (`512m`, `1.5g`, `1024k`, `268435456` bytes; binary units) -> MiB, rounded up. Pure. */
export function parseMemoryMiB(value: string | number): number {
  return asSpecError(() =>
    wholeMiB(String(value).trim(), {
      minMiB: MIN_MEMORY_MIB,
      unit: 'm',
      notASize: 'is not an amount of memory; use a number with a unit: 512m, 1g, 1.5g',
    }),
  );
}

/**
 * A volume's size, in the syntax memory takes (`512M`, `2G`, `2GiB`, bytes)
 * -> bytes, rounded up to whole MiB (src/storage's rule, an ext4 minimum). Pure.
 */
export function parseVolumeSize(value: string | number): number {
  return asSpecError(() => volumeBytes(value));
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go's duration syntax, as Docker and Compose take it (`10s`, `1m30s`, `500ms`, `2.5s`) -> ms, rounded up. Pure. */
export function parseDurationMs(value: string | number): number {
  const text = String(value).trim();
  if (text === '0') return 0;
  const part = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let at = 0;
  while (at < text.length) {
    part.lastIndex = at;
    const match = part.exec(text);
    if (!match) break;
    total += Number(match[1]) * (DURATION_UNITS[match[2] ?? ''] ?? Number.NaN);
    at = part.lastIndex;
  }
  if (text === '' || at < text.length || !Number.isFinite(total)) {
    throw new SpecError(`"${text}" is not a duration; use a number with a unit: 500ms, 10s, 1m30s, 1h`);
  }
  return Math.ceil(total);
}

/** `--cpus 1.5` -> 2: a VM gets whole vCPUs, so a fraction is rounded up. Pure. */
export function parseCpus(value: string | number): number {
  const text = String(value).trim();
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(text) || Number(text) <= 0) {
    throw new SpecError(`"${text}" is not a number of CPUs; use a number above 0, such as 1, 2 or 1.5`);
  }
  return Math.ceil(Number(text));
}

/** A whole number of at least `min` (healthcheck retries). Pure. */
export function parseCount(value: string | number, min: number): number {
  const text = String(value).trim();
  if (!/^\d+$/.test(text) || Number(text) < min) {
    throw new SpecError(`"${text}" is not a whole number of at least ${min}`);
  }
  return Number(text);
}

/** compose's shm_size (`64m`, `1g`, bytes) -> whole MiB, at least 1. Pure. */
export function parseShmMiB(value: string | number): number {
  return asSpecError(() =>
    wholeMiB(String(value).trim(), {
      minMiB: 1,
      unit: 'm',
      notASize: 'is not a size; use a number with a unit: 64m, 1g',
    }),
  );
}
