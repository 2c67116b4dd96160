import { SpecError } from './service.js';

const MiB = 1024 * 1024;
export const MIN_MEMORY_MIB = 64;

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  m: MiB,
  g: 1024 * MiB,
  t: 1024 * 1024 * MiB,
  p: 1024 * 1024 * 1024 * MiB,
};

/** Docker's size syntax (`512m`, `1.5g`, `2GiB`, `1024k`, `268435456` bytes; binary units), or undefined. Pure. */
function readSize(text: string): { bytes: number; hasUnit: boolean } | undefined {
  const match = /^(\d+(?:\.\d+)?) ?([kmgtp]?)i?b?$/i.exec(text);
  const unit = match ? SIZE_UNITS[(match[2] ?? '').toLowerCase()] : undefined;
  if (!match || unit === undefined) return undefined;
  return { bytes: Number(match[1]) * unit, hasUnit: match[2] !== '' };
}

/**
 * A size in Docker's syntax, rounded up to whole MiB, at least `minMiB`. The
 * messages name what it is for; `unit` is how the hints write MiB. Pure.
 */
function wholeMiB(
  text: string,
  rule: { minMiB: number; unit: 'm' | 'M'; notASize: string; tooSmallFor?: string },
): number {
  const size = readSize(text);
  if (!size) throw new SpecError(`"${text}" ${rule.notASize}`);
  const mib = Math.ceil(size.bytes / MiB);
  if (mib < rule.minMiB) {
    const hint = size.hasUnit ? '' : ` (a bare number is bytes; write 512${rule.unit} for MiB)`;
    throw new SpecError(
      `"${text}" is less than ${rule.minMiB} MiB${hint}${rule.tooSmallFor ?? ''}; give at least ${rule.minMiB}${rule.unit}`,
    );
  }
  return mib;
}

/** Docker's memory syntax (`512m`, `1.5g`, `1024k`, `268435456` bytes; binary units) -> MiB, rounded up. Pure. */
export function parseMemoryMiB(value: string | number): number {
  return wholeMiB(String(value).trim(), {
    minMiB: MIN_MEMORY_MIB,
    unit: 'm',
    notASize: 'is not an amount of memory; use a number with a unit: 512m, 1g, 1.5g',
  });
}

// ext4 on a small disk takes 1 MiB for its journal plus its inode tables; below this little is left.
export const MIN_VOLUME_MIB = 16;

/**
 * A volume's size, in the syntax memory takes (`512M`, `2G`, `2GiB`, bytes)
 * -> bytes, rounded up to whole MiB. Pure.
 */
export function parseVolumeSize(value: string | number): number {
  const mib = wholeMiB(String(value).trim(), {
    minMiB: MIN_VOLUME_MIB,
    unit: 'M',
    notASize: 'is not a size; use a number with a unit, such as 512M or 2G',
    tooSmallFor: ', too small for an ext4 volume and its journal',
  });
  return mib * MiB;
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
