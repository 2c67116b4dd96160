import { freeBytes, hasRoom } from '../../../src/host/space.js';
import { parseSysctlFlag, sysctlWriteProblem } from '../../../src/host/sysctl.js';

describe('free space (statfs)', () => {
  test.each([
    ['statfs failed', undefined, undefined],
    ['a full filesystem', { bavail: 0, bsize: 4096 }, 0],
    ['64 MiB of /dev/shm in a container', { bavail: 16384, bsize: 4096 }, 64 * 1024 * 1024],
    ['a nonsense answer', { bavail: -1, bsize: 4096 }, undefined],
  ])('%s', (_name, space, bytes) => {
    expect(freeBytes(space)).toBe(bytes);
  });

  test.each([
    ['unknown space never has room', undefined, 1, false],
    ['exactly enough', 100, 100, true],
    ['too small', 99, 100, false],
  ])('hasRoom: %s', (_name, free, needed, expected) => {
    expect(hasRoom(free, needed)).toBe(expected);
  });
});

describe('/proc/sys flags', () => {
  test.each([
    ['1\n', true],
    ['0\n', false],
    [' 1 ', true],
    ['', undefined],
    ['2\n', undefined],
    [undefined, undefined],
  ])('%j reads as %s', (text, expected) => {
    expect(parseSysctlFlag(text)).toBe(expected);
  });

  const file = '/proc/sys/net/ipv4/ip_forward';
  test.each([
    [{ code: 'EROFS', message: 'EROFS: read-only file system' }, 'is read-only here (EROFS)'],
    [
      {
        message:
          'sysctl -q -w net.ipv4.ip_forward=1 exited with code 255: sysctl: setting key "net.ipv4.ip_forward": Read-only file system',
      },
      'is read-only here (EROFS)',
    ],
    [
      { message: 'sysctl: setting key "net.ipv4.ip_forward": Operation not permitted' },
      'cannot be written by this process (EPERM)',
    ],
    [{ code: 'EACCES', message: 'EACCES: permission denied' }, 'cannot be written by this process (EACCES)'],
    [{ code: 'ENOENT', message: 'ENOENT' }, 'does not exist'],
    [{ message: 'something odd\nmore' }, 'could not be written: something odd'],
  ])('a failed write says why: %j', (error, said) => {
    expect(sysctlWriteProblem(file, error)).toContain(`${file} ${said}`);
  });
});
