import { MiB, wholeMiB } from '../sizes.js';

// ext4 on a small disk takes 1 MiB for its journal plus its inode tables; below this little is left.
export const MIN_VOLUME_MIB = 16;

/**
 * A volume's size, in the syntax memory takes (`512M`, `2G`, `2GiB`, bytes)
 * -> bytes, rounded up to whole MiB; a bad one throws SizeError. Pure.
 */
export function volumeBytes(value: string | number): number {
  const mib = wholeMiB(String(value).trim(), {
    minMiB: MIN_VOLUME_MIB,
    unit: 'M',
    notASize: 'is not a size; use a number with a unit, such as 512M or 2G',
    tooSmallFor: ', too small for an ext4 volume and its journal',
  });
  return mib * MiB;
}
