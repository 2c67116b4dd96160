import { MountError } from '../../../src/storage/mounts.js';
import { DEFAULT_VOLUME_SIZE, defaultVolumeSize } from '../../../src/storage/volumes.js';

describe('defaultVolumeSize: HYPER_VOLUME_SIZE, else 10 GiB', () => {
  test.each([
    [undefined, 10 * 1024 ** 3],
    ['', 10 * 1024 ** 3],
    ['2G', 2 * 1024 ** 3],
    ['512M', 512 * 1024 ** 2],
  ])('HYPER_VOLUME_SIZE=%j -> %d', (value, bytes) => {
    expect(defaultVolumeSize(value)).toBe(bytes);
  });

  test('the built-in default is 10 GiB', () => expect(DEFAULT_VOLUME_SIZE).toBe(10 * 1024 ** 3));

  test.each([
    ['abc', 'HYPER_VOLUME_SIZE: "abc" is not a size; use a number with a unit, such as 512M or 2G'],
    [
      '4m',
      'HYPER_VOLUME_SIZE: "4m" is less than 16 MiB, too small for an ext4 volume and its journal; give at least 16M',
    ],
  ])('HYPER_VOLUME_SIZE=%j is refused', (value, message) => {
    // Not toThrow(new MountError(message)): Jest compares causes too, and this one keeps its SizeError.
    expect(() => defaultVolumeSize(value)).toThrow(
      expect.objectContaining({ name: MountError.name, message }),
    );
  });
});
