import { goFileMode, pathStatHeader } from '../../../src/api/archive.js';
import type { PathStat } from '../../../src/engine/archive.js';

/** Go's os.FileMode type bits. */
const DIR = 2 ** 31;
const SYMLINK = 2 ** 27;
const DEVICE = 2 ** 26;
const PIPE = 2 ** 25;
const SOCKET = 2 ** 24;
const SETUID = 2 ** 23;
const SETGID = 2 ** 22;
const STICKY = 2 ** 20;

describe('goFileMode', () => {
  test.each([
    ['a regular file', 0o100644, 0o644],
    ['an executable', 0o100755, 0o755],
    ['a directory', 0o040755, DIR + 0o755],
    ['a symlink', 0o120777, SYMLINK + 0o777],
    ['a fifo', 0o010600, PIPE + 0o600],
    ['a socket', 0o140755, SOCKET + 0o755],
    ['a block device', 0o060660, DEVICE + 0o660],
    ['a setuid program', 0o104755, SETUID + 0o755],
    ['a setgid directory', 0o042775, DIR + SETGID + 0o775],
    ['a sticky directory (/tmp)', 0o041777, DIR + STICKY + 0o777],
    ['all three special bits', 0o107755, SETUID + SETGID + STICKY + 0o755],
  ])('%s', (_what, mode, expected) => {
    expect(goFileMode(mode)).toBe(expected);
  });
});

describe('pathStatHeader', () => {
  const decode = (header: string): unknown => JSON.parse(Buffer.from(header, 'base64').toString('utf8'));

  test('is base64 of the JSON the docker CLI reads', () => {
    const stat: PathStat = { name: 'nginx', size: 4096, mode: 0o40755, mtime: 1712345678, linkTarget: '' };
    const header = pathStatHeader(stat);
    expect(header).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(decode(header)).toEqual({
      name: 'nginx',
      size: 4096,
      mode: DIR + 0o755,
      mtime: '2024-04-05T19:34:38.000Z',
      linkTarget: '',
    });
  });

  test('a symlink carries its target and a mode Go reads as a symlink', () => {
    const stat: PathStat = { name: 'sh', size: 7, mode: 0o120777, mtime: 0, linkTarget: '/bin/busybox' };
    expect(decode(pathStatHeader(stat))).toEqual({
      name: 'sh',
      size: 7,
      mode: SYMLINK + 0o777,
      mtime: '1970-01-01T00:00:00.000Z',
      linkTarget: '/bin/busybox',
    });
  });

  test('the mtime is RFC 3339 in UTC', () => {
    const stat: PathStat = { name: 'f', size: 1, mode: 0o100644, mtime: 1700000000, linkTarget: '' };
    const { mtime } = decode(pathStatHeader(stat)) as { mtime: string };
    expect(mtime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
    expect(Date.parse(mtime)).toBe(1700000000 * 1000);
  });
});

test('a character device is a device and a character device, as Go says', () => {
  expect(goFileMode(0o020666)).toBe(2 ** 26 + 2 ** 21 + 0o666);
});
