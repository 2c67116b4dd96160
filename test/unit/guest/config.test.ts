import {
  DEFAULT_CAPABILITIES,
  execArgv,
  guestFiles,
  mergeEnv,
  normalizeSignal,
  serviceArgv,
  serviceCapabilities,
} from '../../../src/guest/config.js';
import { imageRunConfig } from '../../../src/images/run-config.js';

const image = imageRunConfig({
  architecture: 'amd64',
  os: 'linux',
  rootfs: { type: 'layers', diff_ids: [] },
  config: {
    Entrypoint: ['/entry.sh'],
    Cmd: ['serve', '--port', '80'],
    Env: ['PATH=/opt/bin', 'A=1'],
    User: 'www',
    WorkingDir: '/srv',
  },
});

describe('serviceArgv follows Docker', () => {
  test('Entrypoint + Cmd', () => {
    expect(serviceArgv(image, {}, 'img')).toEqual(['/entry.sh', 'serve', '--port', '80']);
  });
  test('arguments replace Cmd', () => {
    expect(serviceArgv(image, { command: ['debug'] }, 'img')).toEqual(['/entry.sh', 'debug']);
  });
  test('--entrypoint drops the image Cmd', () => {
    expect(serviceArgv(image, { entrypoint: ['/bin/sh'] }, 'img')).toEqual(['/bin/sh']);
    expect(serviceArgv(image, { entrypoint: ['/bin/sh'], command: ['-c', 'true'] }, 'img')).toEqual([
      '/bin/sh',
      '-c',
      'true',
    ]);
  });
  test('an image with neither Entrypoint nor Cmd and no command is refused', () => {
    const bare = imageRunConfig({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [] },
    });
    expect(() => serviceArgv(bare, {}, 'oci:/x')).toThrow(
      'image oci:/x has neither Entrypoint nor Cmd, and no command was given',
    );
  });
});

describe('mergeEnv', () => {
  test('user env wins over the image; PATH and HOSTNAME are set', () => {
    expect(mergeEnv(['PATH=/opt/bin', 'A=1', 'B=2'], ['A=9', 'C=x=y'], 'web')).toEqual([
      'PATH=/opt/bin',
      'HOSTNAME=web',
      'A=9',
      'B=2',
      'C=x=y',
    ]);
  });
  test('a default PATH when the image has none', () => {
    expect(mergeEnv([], [], 'h')[0]).toBe(
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    );
  });
});

describe('normalizeSignal', () => {
  test.each([
    ['SIGTERM', 'TERM'],
    ['sigquit', 'QUIT'],
    ['INT', 'INT'],
    ['9', '9'],
  ])('%s -> %s', (input, output) => expect(normalizeSignal(input)).toBe(output));
  test('garbage is refused', () =>
    expect(() => normalizeSignal('TERM; reboot')).toThrow('is not a signal name'));
});

const NETWORK = {
  ip: '10.0.2.15',
  prefix: 24,
  gateway: '10.0.2.2',
  hosts: '127.0.0.1\tlocalhost\n10.0.2.15\tweb\n10.0.2.100\tdb postgres\n',
  resolvConf: 'nameserver 10.0.2.3\n',
};

describe('guestFiles', () => {
  const files = guestFiles({
    hostname: 'web',
    argv: ['/bin/httpd', '-f', 'a b'],
    env: ['PATH=/bin', 'X=1'],
    user: 'www:www',
    workdir: '/srv',
    stopSignal: 'SIGQUIT',
    network: NETWORK,
  });
  const byName = Object.fromEntries(files.map((f) => [f.name, f.content.toString()]));

  test('settings are key=value lines the init reads', () => {
    expect(byName.settings).toBe(
      'hostname=web\nip=10.0.2.15\nprefix=24\ngateway=10.0.2.2\nuser=www:www\nworkdir=/srv\nstopsignal=QUIT\nrootdev=rootfs\ncaps=0,1,3,4,5,6,7,8,10,13,18,27,29,31\n',
    );
  });
  test("a bridge member's settings name its MAC, which a clone of a boot template sets itself", () => {
    const [settings] = guestFiles({
      hostname: 'web',
      argv: ['x'],
      env: [],
      user: '',
      workdir: '/',
      stopSignal: 'TERM',
      network: { ...NETWORK, mac: '52:54:0a:d5:08:02' },
    });
    expect(settings?.content.toString()).toMatch(/^hostname=web\nmac=52:54:0a:d5:08:02\nip=10.0.2.15\n/);
  });
  test('argv and env are NUL-separated, so any byte but NUL survives', () => {
    expect(byName.argv).toBe('/bin/httpd\0-f\0a b\0');
    expect(byName.env).toBe('PATH=/bin\0X=1\0');
  });
  test('hosts and resolv.conf', () => {
    expect(byName.hosts).toBe(NETWORK.hosts);
    expect(byName['resolv.conf']).toBe('nameserver 10.0.2.3\n');
  });
  test("compose's guest settings are lines of their own, and the files a tar at their paths", () => {
    const config = {
      hostname: 'web',
      argv: ['x'],
      env: [],
      user: '',
      workdir: '/',
      stopSignal: 'TERM',
      network: NETWORK,
      settings: {
        domainname: 'example.test',
        shmMiB: 128,
        readOnly: true,
        restart: { policy: 'on-failure' as const, maxRetries: 2 },
        sysctls: { 'net.core.somaxconn': '1024' },
        ulimits: { nofile: { soft: 1024, hard: -1 } },
        capAdd: ['NET_ADMIN'],
        capDrop: ['ALL'],
        groupAdd: ['audio', '4242'],
        pidsLimit: 200,
      },
      files: [{ target: '/run/secrets/pw', content: Buffer.from('s3cret'), uid: 0, gid: 0, mode: 0o400 }],
    };
    const made = Object.fromEntries(guestFiles(config).map((f) => [f.name, f.content]));
    expect(made.settings?.toString().split('\n').slice(8)).toEqual([
      'domainname=example.test',
      'shmsize=128',
      'readonly=1',
      'pidslimit=200',
      'restart=on-failure',
      'restartmax=2',
      'sysctl=net.core.somaxconn=1024',
      'caps=12',
      'ulimit=nofile 1024 -1',
      'group=audio',
      'group=4242',
      '',
    ]);
    expect(made.files?.subarray(0, 15).toString()).toBe('run/secrets/pw\0');
    expect(made.files?.subarray(100, 107).toString()).toBe('0000400');
  });

  test('a newline in a single-line setting is refused', () => {
    expect(() =>
      guestFiles({
        hostname: 'h',
        argv: ['x'],
        env: [],
        user: 'a\nip=1.2.3.4',
        workdir: '/',
        stopSignal: 'TERM',
        network: NETWORK,
      }),
    ).toThrow('user must be a single line');
  });
});

test('execArgv enters the container as the service user', () => {
  expect(execArgv({ user: 'www', workdir: '/srv' }, ['ls', '-l'], ['A=1'])).toEqual([
    '/bin/hyper-exec',
    '--root',
    '/container',
    '--user',
    'www',
    '--workdir',
    '/srv',
    '--env-file',
    '/run/hyper/env',
    '--limits-file',
    '/run/hyper/limits',
    '--caps-file',
    '/run/hyper/caps',
    '--groups-file',
    '/run/hyper/groups',
    '--cgroup',
    '/sys/fs/cgroup/service',
    '--env',
    'A=1',
    '--',
    'ls',
    '-l',
  ]);
});

test('accountNames reads the first field of passwd and group lines', async () => {
  const { accountNames } = await import('../../../src/images/users.js');
  expect([
    ...accountNames('root:x:0:0:root:/root:/bin/sh\n# comment\nwww-data:x:33:33::/www:/bin/false\n\n'),
  ]).toEqual(['root', 'www-data']);
});

describe('serviceCapabilities, as Docker computes them', () => {
  test("Docker's default set unless told otherwise", () => {
    expect(serviceCapabilities({}).sort()).toEqual([...DEFAULT_CAPABILITIES].sort());
  });
  test('cap_drop takes out, cap_add puts in, ALL means every one', () => {
    const set = serviceCapabilities({ capAdd: ['NET_ADMIN'], capDrop: ['NET_RAW', 'MKNOD'] });
    expect(set).toContain('NET_ADMIN');
    expect(set).not.toContain('NET_RAW');
    expect(set).not.toContain('MKNOD');
    expect(serviceCapabilities({ capDrop: ['ALL'], capAdd: ['CHOWN'] })).toEqual(['CHOWN']);
    expect(serviceCapabilities({ capAdd: ['ALL'] })).toHaveLength(41);
    expect(serviceCapabilities({ privileged: true, capDrop: ['ALL'] })).toHaveLength(41);
  });
  test('a name that is not a capability is refused', () => {
    expect(() => serviceCapabilities({ capAdd: ['FLY'] })).toThrow('"FLY" is not a capability');
  });
});
