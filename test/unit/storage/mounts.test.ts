import {
  DEFAULT_TMPFS_OPTIONS,
  guestMountTable,
  namedVolume,
  parseTmpfs,
  parseVolume,
  planMounts,
} from '../../../src/storage/mounts.js';

describe('parseVolume: Docker short syntax', () => {
  test.each([
    [
      'pgdata:/var/lib/postgresql/data',
      { kind: 'volume', name: 'pgdata', target: '/var/lib/postgresql/data', readOnly: false },
    ],
    ['pgdata:/data:ro', { kind: 'volume', name: 'pgdata', target: '/data', readOnly: true }],
    ['pgdata:/data:rw', { kind: 'volume', name: 'pgdata', target: '/data', readOnly: false }],
    [
      './db/init:/docker-entrypoint-initdb.d:ro',
      { kind: 'bind', source: '/repo/db/init', target: '/docker-entrypoint-initdb.d', readOnly: true },
    ],
    ['../shared:/shared', { kind: 'bind', source: '/shared', target: '/shared', readOnly: false }],
    ['/etc/app:/etc/app', { kind: 'bind', source: '/etc/app', target: '/etc/app', readOnly: false }],
    ['/cache', { kind: 'anonymous', target: '/cache', readOnly: false }],
    ['/cache:ro', { kind: 'anonymous', target: '/cache', readOnly: true }],
    ['data:/data/', { kind: 'volume', name: 'data', target: '/data', readOnly: false }],
  ])('%s', (text, expected) => {
    expect(parseVolume(text, '/repo')).toEqual(expected);
  });

  test.each([
    ['data:relative', 'volume "data:relative": the path in the container must be absolute, not "relative"'],
    ['data:/data:rx', 'volume "data:/data:rx": unknown mode "rx"; use ro or rw'],
    ['a:/b:ro:x', 'volume "a:/b:ro:x": expected SOURCE:TARGET[:ro]'],
    ['data:/', 'volume "data:/": cannot mount over the root directory /'],
    ['data:/a/../b', 'volume "data:/a/../b": "/a/../b" must not hold whitespace or ".."'],
    [
      '-x:/data',
      'volume "-x:/data": "-x" is not a valid volume name; use letters, digits, "_", "." and "-", or a path starting with / or ./',
    ],
  ])('refuses %s', (text, message) => {
    expect(() => parseVolume(text, '/repo')).toThrow(message);
  });
});

describe('parseTmpfs', () => {
  test("a path gets Docker's defaults; given options are added to them", () => {
    expect(parseTmpfs('/run')).toEqual({ kind: 'tmpfs', target: '/run', options: DEFAULT_TMPFS_OPTIONS });
    expect(parseTmpfs('/run:size=64m,mode=1777')).toEqual({
      kind: 'tmpfs',
      target: '/run',
      options: `${DEFAULT_TMPFS_OPTIONS},size=64m,mode=1777`,
    });
  });

  test('refuses options that could carry anything else', () => {
    expect(() => parseTmpfs('/run:size=64m;reboot')).toThrow(
      'tmpfs "/run:size=64m;reboot": options must look like size=64m,mode=1777',
    );
  });
});

describe('planMounts', () => {
  test("the image's VOLUMEs get anonymous volumes unless a mount covers them; parents come first", () => {
    const mounts = planMounts(
      ['pgdata:/var/lib/postgresql/data'],
      ['/var/lib/postgresql/data/tmp'],
      ['/var/lib/postgresql/data', '/logs'],
      '/repo',
    );
    expect(mounts.map((m) => [m.kind, m.target])).toEqual([
      ['anonymous', '/logs'],
      ['volume', '/var/lib/postgresql/data'],
      ['tmpfs', '/var/lib/postgresql/data/tmp'],
    ]);
  });

  test('two mounts on one path are refused', () => {
    expect(() => planMounts(['aa:/data'], ['/data'], [], '/')).toThrow(
      'two mounts on /data; give each path once',
    );
  });
});

test('the guest mount table lists disks and tmpfs mounts, parents first, one a line', () => {
  const table = guestMountTable(
    [
      { serial: 'vol1', path: '/s/v1.qcow2', target: '/a/b', readOnly: true, copyUp: false },
      { serial: 'vol0', path: '/s/v0.qcow2', target: '/a', readOnly: false, copyUp: true, volume: 'data' },
    ],
    [{ kind: 'tmpfs', target: '/a/b/c', options: 'rw,noexec' }],
  );
  expect(table).toBe('disk vol0 /a rw copyup\ndisk vol1 /a/b ro -\ntmpfs - /a/b/c rw,noexec -\n');
});

test('namedVolume: only NAME:/path names a volume', () => {
  expect(
    ['pgdata:/data', 'pgdata:/data:ro', './x:/data', '/host:/data', '~/x:/data', '/anon', '/anon:ro'].map(
      namedVolume,
    ),
  ).toEqual(['pgdata', 'pgdata', undefined, undefined, undefined, undefined, undefined]);
});
