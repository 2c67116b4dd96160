import {
  bindShares,
  DEFAULT_TMPFS_OPTIONS,
  guestMountTable,
  namedVolume,
  parseTmpfs,
  parseVolume,
  planMounts,
  type MountSpec,
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

  test("an image mount covers the image's VOLUME at its path, and shares the one-mount-a-path rule", () => {
    const image = {
      image: 'docs:1',
      base: '/cache/rootfs/abc.ext4',
      target: '/srv/docs/',
      subpath: 'usr/share/doc/',
    };
    const mounts = planMounts([], [], ['/srv/docs'], '/', [image]);
    expect(mounts).toEqual([
      {
        kind: 'image',
        image: 'docs:1',
        base: '/cache/rootfs/abc.ext4',
        target: '/srv/docs',
        subpath: 'usr/share/doc',
        readOnly: true,
      },
    ]);
    expect(() => planMounts(['data:/srv/docs'], [], [], '/', [image])).toThrow(
      'two mounts on /srv/docs; give each path once',
    );
    expect(() => planMounts([], [], [], '/', [{ ...image, subpath: 'a/../../etc' }])).toThrow(
      'image mount of docs:1: subpath "a/../../etc" must name a directory inside the image, without whitespace or ".."',
    );
    expect(() => planMounts([], [], [], '/', [{ ...image, target: 'docs' }])).toThrow(
      'image mount of docs:1: the path in the container must be absolute, not "docs"',
    );
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

test("an image mount's line names its disk, read-only, and its subpath or -", () => {
  const table = guestMountTable(
    [
      {
        serial: 'vol0',
        path: '/cache/rootfs/abc.ext4',
        target: '/docs',
        readOnly: true,
        copyUp: false,
        image: { name: 'docs:1', subpath: 'usr/share/doc' },
      },
      {
        serial: 'vol1',
        path: '/cache/rootfs/def.ext4',
        target: '/tools',
        readOnly: true,
        copyUp: false,
        image: { name: 'tools:1' },
      },
    ],
    [],
  );
  expect(table).toBe('image vol0 /docs ro usr/share/doc\nimage vol1 /tools ro -\n');
});

test('namedVolume: only NAME:/path names a volume', () => {
  expect(
    ['pgdata:/data', 'pgdata:/data:ro', './x:/data', '/host:/data', '~/x:/data', '/anon', '/anon:ro'].map(
      namedVolume,
    ),
  ).toEqual(['pgdata', 'pgdata', undefined, undefined, undefined, undefined, undefined]);
});

describe('live shares of bind mounts', () => {
  const mounts: MountSpec[] = [
    { kind: 'volume', name: 'data', target: '/data', readOnly: false },
    { kind: 'bind', source: '/repo/conf', target: '/etc/app', readOnly: true },
    { kind: 'tmpfs', target: '/run', options: DEFAULT_TMPFS_OPTIONS },
    { kind: 'anonymous', target: '/cache', readOnly: false },
    { kind: 'bind', source: '/repo/src', target: '/srv/app', readOnly: false },
  ];

  test('bindShares: only bind mounts, each tagged share<index> by its place among the mounts', () => {
    expect(bindShares(mounts)).toEqual([
      { tag: 'share1', source: '/repo/conf', target: '/etc/app', readOnly: true },
      { tag: 'share4', source: '/repo/src', target: '/srv/app', readOnly: false },
    ]);
  });

  test('bindShares: no bind mounts, no shares', () => {
    expect(bindShares(mounts.filter((m) => m.kind !== 'bind'))).toEqual([]);
    expect(bindShares([])).toEqual([]);
  });

  test('the mount table gives each share a line: share TAG TARGET rw|ro -', () => {
    expect(
      guestMountTable(
        [],
        [],
        [
          { tag: 'share0', source: '/repo/src', target: '/srv', readOnly: false },
          { tag: 'share1', source: '/repo/conf', target: '/etc', readOnly: true },
        ],
      ),
    ).toBe('share share0 /srv rw -\nshare share1 /etc ro -\n');
  });

  test('shares, disks and tmpfs mounts are ordered together, parents before children', () => {
    const table = guestMountTable(
      [{ serial: 'vol0', path: '/s/v0.qcow2', target: '/srv/app/data/db', readOnly: false, copyUp: true }],
      [{ kind: 'tmpfs', target: '/srv/app/data', options: 'rw,noexec' }],
      [
        { tag: 'share2', source: '/repo/app', target: '/srv/app', readOnly: false },
        { tag: 'share3', source: '/repo/cache', target: '/srv/app/data/db/cache', readOnly: true },
      ],
    );
    expect(table).toBe(
      [
        'share share2 /srv/app rw -',
        'tmpfs - /srv/app/data rw,noexec -',
        'disk vol0 /srv/app/data/db rw copyup',
        'share share3 /srv/app/data/db/cache ro -',
        '',
      ].join('\n'),
    );
  });

  test('relayed sockets come after every mount, on the relay port', () => {
    expect(
      guestMountTable(
        [{ serial: 'vol0', path: '/s/v0.qcow2', target: '/var/run', readOnly: false, copyUp: false }],
        [],
        [],
        ['/var/run/docker.sock'],
      ),
    ).toBe('disk vol0 /var/run rw -\nsocket hyper.relay /var/run/docker.sock - -\n');
  });

  test('a share given after its child share still comes first', () => {
    expect(
      guestMountTable(
        [],
        [],
        [
          { tag: 'share1', source: '/repo/www/html', target: '/var/www/html', readOnly: true },
          { tag: 'share0', source: '/repo/www', target: '/var/www', readOnly: false },
        ],
      ),
    ).toBe('share share0 /var/www rw -\nshare share1 /var/www/html ro -\n');
  });
});
