// Docker's size syntax, shared by spec (memory, volume sizes) and storage (HYPER_VOLUME_SIZE); each rethrows SizeError as its own error.
import { type ErrorKind, HyperError } from './errors.js';

export const MiB = 1024 * 1024;

/** A text that is not a size, or one below the minimum for its use. */
export class SizeError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'SizeError';
}

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
export function wholeMiB(
  text: string,
  rule: { minMiB: number; unit: 'm' | 'M'; notASize: string; tooSmallFor?: string },
): number {
  const size = readSize(text);
  if (!size) throw new SizeError(`"${text}" ${rule.notASize}`);
  const mib = Math.ceil(size.bytes / MiB);
  if (mib < rule.minMiB) {
    const hint = size.hasUnit ? '' : ` (a bare number is bytes; write 512${rule.unit} for MiB)`;
    throw new SizeError(
      `"${text}" is less than ${rule.minMiB} MiB${hint}${rule.tooSmallFor ?? ''}; give at least ${rule.minMiB}${rule.unit}`,
    );
  }
  return mib;
}
