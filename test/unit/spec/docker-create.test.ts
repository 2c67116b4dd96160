import { PARTIAL_HEALTHCHECK, SpecError } from '../../../src/spec/container.js';
import {
  containerFromCreateBody,
  CreateFieldError,
  type CreateBody,
} from '../../../src/spec/docker-create.js';

const BASE = '/work';
const IMAGE = { Image: 'postgres:16' };

const create = (body: CreateBody, name = 'db') => containerFromCreateBody(body, name, BASE);
const spec = (body: Partial<CreateBody>, name = 'db') => create({ ...IMAGE, ...body }, name).spec;

/** The message of the CreateFieldError a body is refused with; the bodies here are what a client may send, typed or not. */
function refusal(body: unknown, name = 'db'): string {
  try {
    containerFromCreateBody(body as CreateBody, name, BASE);
  } catch (error: unknown) {
    if (error instanceof CreateFieldError) return error.message;
    throw error;
  }
  throw new Error('no CreateFieldError was thrown');
}

describe('containerFromCreateBody: a ContainerCreate body to a ContainerSpec', () => {
  test('only an image: the spec every door makes, and nothing the body did not ask for', () => {
    expect(create(IMAGE, 'cache')).toEqual({
      spec: {
        name: 'cache',
        image: 'postgres:16',
        env: [],
        ports: [],
        volumes: [],
        tmpfs: [],
        baseDir: BASE,
        dependsOn: [],
        aliases: [],
        expose: [],
        labels: {},
        createBindSources: true,
      },
      autoRemove: false,
      network: undefined,
      warnings: [],
    });
  });

  test('the fields docker run sends land in the spec', () => {
    const result = create({
      Image: 'postgres:16',
      Env: ['POSTGRES_PASSWORD=secret', 'EMPTY='],
      Cmd: ['postgres', '-c', 'fsync=off'],
      Entrypoint: ['docker-entrypoint.sh'],
      WorkingDir: '/var/lib/postgresql',
      User: '999:999',
      StopSignal: 'SIGINT',
      ExposedPorts: { '5432/tcp': {}, '8125/udp': {}, '9187/tcp': {} },
      Labels: { 'org.testcontainers': 'true', 'com.example.empty': '' },
      HostConfig: { AutoRemove: true },
    });
    expect(result.spec).toEqual({
      name: 'db',
      image: 'postgres:16',
      env: ['POSTGRES_PASSWORD=secret', 'EMPTY='],
      ports: [],
      volumes: [],
      tmpfs: [],
      baseDir: BASE,
      dependsOn: [],
      aliases: [],
      expose: [5432, 9187],
      labels: { 'org.testcontainers': 'true', 'com.example.empty': '' },
      createBindSources: true,
      command: ['postgres', '-c', 'fsync=off'],
      entrypoint: ['docker-entrypoint.sh'],
      workdir: '/var/lib/postgresql',
      user: '999:999',
      stopSignal: 'SIGINT',
    });
    expect(result.autoRemove).toBe(true);
  });

  test('an exposed port without a protocol is TCP', () => {
    expect(spec({ ExposedPorts: { '8080': {} } }).expose).toEqual([8080]);
  });

  test('AutoRemove false or absent keeps the container when its command ends', () => {
    expect(create({ ...IMAGE, HostConfig: { AutoRemove: false } }).autoRemove).toBe(false);
    expect(create({ ...IMAGE, HostConfig: {} }).autoRemove).toBe(false);
  });

  test('empty WorkingDir, User and StopSignal leave the image its own', () => {
    const made = spec({ WorkingDir: '', User: '', StopSignal: '' });
    expect(made).not.toHaveProperty('workdir');
    expect(made).not.toHaveProperty('user');
    expect(made).not.toHaveProperty('stopSignal');
  });
});

describe('containerFromCreateBody: kernel settings, capabilities and restarts have their VM meaning', () => {
  test('docker run --sysctl, --ulimit, --shm-size, --read-only, --cap-add, --cap-drop, --privileged, -h, --restart', () => {
    const made = spec({
      Hostname: 'web-host',
      Domainname: 'example.test',
      StopTimeout: 30,
      HostConfig: {
        Sysctls: { 'net.core.somaxconn': '1024' },
        Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }],
        ShmSize: 256 * 1024 * 1024,
        ReadonlyRootfs: true,
        CapAdd: ['CAP_NET_ADMIN'],
        CapDrop: ['net_raw'],
        Privileged: true,
        GroupAdd: ['audio', '4242'],
        RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 3 },
      },
    });
    expect(made).toMatchObject({
      hostname: 'web-host',
      stopGraceMs: 30_000,
      guest: {
        domainname: 'example.test',
        sysctls: { 'net.core.somaxconn': '1024' },
        ulimits: { nofile: { soft: 1024, hard: 2048 } },
        shmMiB: 256,
        readOnly: true,
        capAdd: ['NET_ADMIN'],
        capDrop: ['NET_RAW'],
        privileged: true,
        groupAdd: ['audio', '4242'],
        restart: { policy: 'on-failure', maxRetries: 3 },
      },
    });
  });
});

describe('containerFromCreateBody: what would let a container past its VM is refused, naming the field', () => {
  const refused: [field: string, body: Partial<CreateBody>, message: string][] = [
    [
      'HostConfig.Devices',
      {
        HostConfig: {
          Devices: [{ PathOnHost: '/dev/fuse', PathInContainer: '/dev/fuse', CgroupPermissions: 'rwm' }],
        },
      },
      'HostConfig.Devices: host devices cannot be passed into a microVM',
    ],
    [
      'HostConfig.DeviceRequests',
      { HostConfig: { DeviceRequests: [{ Driver: 'nvidia', Count: -1, Capabilities: [['gpu']] }] } },
      'HostConfig.DeviceRequests: host devices (GPUs) cannot be passed into a microVM',
    ],
    [
      'HostConfig.PidMode',
      { HostConfig: { PidMode: 'host' } },
      'HostConfig.PidMode: a container cannot share another PID namespace: it has a kernel of its own',
    ],
    [
      'HostConfig.PidMode',
      { HostConfig: { PidMode: 'container:other' } },
      'HostConfig.PidMode: a container cannot share another PID namespace: it has a kernel of its own',
    ],
    [
      'HostConfig.IpcMode',
      { HostConfig: { IpcMode: 'host' } },
      'HostConfig.IpcMode: a container cannot share another IPC namespace: it has a kernel of its own',
    ],
    [
      'HostConfig.UTSMode',
      { HostConfig: { UTSMode: 'host' } },
      "HostConfig.UTSMode: a container cannot share the host's hostname namespace",
    ],
    [
      'HostConfig.UsernsMode',
      { HostConfig: { UsernsMode: 'host' } },
      "HostConfig.UsernsMode: a container cannot share the host's user namespace",
    ],
    [
      'HostConfig.CgroupParent',
      { HostConfig: { CgroupParent: '/docker' } },
      "HostConfig.CgroupParent: a VM is not placed in a host cgroup of the caller's choice",
    ],
    [
      'HostConfig.SecurityOpt',
      { HostConfig: { SecurityOpt: ['seccomp=unconfined'] } },
      'HostConfig.SecurityOpt: security options apply to a shared kernel; each container here has its own',
    ],
    [
      'HostConfig.VolumesFrom',
      { HostConfig: { VolumesFrom: ['other'] } },
      'HostConfig.VolumesFrom: volumes cannot be taken from another container; name a volume instead',
    ],
    [
      'HostConfig.Links',
      { HostConfig: { Links: ['other:alias'] } },
      'HostConfig.Links: legacy links are not supported; put both containers on one network and use its aliases',
    ],
    [
      'Tty',
      { Tty: true },
      'Tty: a terminal (docker run -t) is not supported; the output comes as stdout and stderr',
    ],
    [
      'OpenStdin',
      { OpenStdin: true },
      "OpenStdin: the container's command cannot be given stdin (docker run -i); use exec -i",
    ],
    [
      'HostConfig.NetworkMode',
      { HostConfig: { NetworkMode: 'host' } },
      'HostConfig.NetworkMode: "host" would put the container on the host\'s network; each container here is a VM on the job network',
    ],
    [
      'HostConfig.NetworkMode',
      { HostConfig: { NetworkMode: 'none' } },
      'HostConfig.NetworkMode: "none" is not supported; use the default network or a network made with "docker network create"',
    ],
    [
      'HostConfig.NetworkMode',
      { HostConfig: { NetworkMode: 'container:other' } },
      'HostConfig.NetworkMode: "container:other" is not supported; use the default network or a network made with "docker network create"',
    ],
    [
      'HostConfig.PublishAllPorts',
      { HostConfig: { PublishAllPorts: true } },
      'HostConfig.PublishAllPorts: publish each port with PortBindings (-p) instead',
    ],
  ];

  test.each(refused)('%s: %j', (field, body, message) => {
    expect(message.startsWith(`${field}: `)).toBe(true);
    expect(refusal({ ...IMAGE, ...body })).toBe(message);
  });

  test('a refused field is refused before the image is looked at', () => {
    expect(
      refusal({
        HostConfig: {
          Devices: [{ PathOnHost: '/dev/kvm', PathInContainer: '/dev/kvm', CgroupPermissions: 'rwm' }],
        },
      }),
    ).toMatch(/^HostConfig\.Devices: /);
  });

  test.each([
    [
      { HostConfig: { RestartPolicy: { Name: 'sometimes' } } },
      'HostConfig.RestartPolicy: "sometimes" is not no, always, on-failure or unless-stopped',
    ],
    [{ HostConfig: { CapAdd: ['FLY'] } }, 'HostConfig.CapAdd/CapDrop: "FLY" is not a capability'],
    [{ HostConfig: { GroupAdd: ['a b'] } }, 'HostConfig.GroupAdd: "a b" is not a group name or number'],
    [
      { HostConfig: { Sysctls: { 'not a name': '1' } } },
      'HostConfig.Sysctls: "not a name" is not a sysctl name with a one-line value',
    ],
    [
      { HostConfig: { Ulimits: [{ Name: 'files', Soft: 1, Hard: 1 }] } },
      'HostConfig.Ulimits: "files" is not a ulimit',
    ],
    [{ Hostname: 'not_a_host' }, 'Hostname: "not_a_host" is not a host name'],
    [{ StopTimeout: -1 }, 'StopTimeout: must be a whole number of seconds'],
  ] as [Partial<CreateBody>, string][])('a bad value is refused with its field: %j', (body, message) => {
    expect(refusal({ ...IMAGE, ...body })).toContain(message);
  });

  test('a refusal is a 400-kind SpecError', () => {
    const error = (() => {
      try {
        return create({ ...IMAGE, Tty: true });
      } catch (caught: unknown) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(CreateFieldError);
    expect(error).toBeInstanceOf(SpecError);
    expect((error as CreateFieldError).kind).toBe('Invalid');
  });

  test.each([
    ['Privileged false', { HostConfig: { Privileged: false } }],
    [
      'empty CapAdd, CapDrop, Devices and SecurityOpt',
      { HostConfig: { CapAdd: [], CapDrop: [], Devices: [], SecurityOpt: [] } },
    ],
    ['PidMode ""', { HostConfig: { PidMode: '' } }],
    ['IpcMode private', { HostConfig: { IpcMode: 'private' } }],
    ['IpcMode shareable', { HostConfig: { IpcMode: 'shareable' } }],
    ['IpcMode none', { HostConfig: { IpcMode: 'none' } }],
    ['UTSMode ""', { HostConfig: { UTSMode: '' } }],
    ['no Sysctls', { HostConfig: { Sysctls: {} } }],
    ['Tty false, OpenStdin false', { Tty: false, OpenStdin: false }],
    ['RestartPolicy no', { HostConfig: { RestartPolicy: { Name: 'no' } } }],
    ['RestartPolicy ""', { HostConfig: { RestartPolicy: { Name: '' } } }],
    ['PublishAllPorts false', { HostConfig: { PublishAllPorts: false } }],
  ] as [string, Partial<CreateBody>][])('what docker run sends by default is accepted: %s', (_what, body) => {
    expect(spec(body).image).toBe('postgres:16');
  });
});

describe('containerFromCreateBody: malformed bodies', () => {
  test.each([
    [null, 'the request body must be a JSON object'],
    [[], 'the request body must be a JSON object'],
    ['postgres', 'the request body must be a JSON object'],
    [{}, 'Image: an image is required'],
    [{ Image: '' }, 'Image: an image is required'],
    [{ Image: 7 }, 'Image: must be a string'],
    [{ ...IMAGE, Env: 'A=1' }, 'Env: must be a list of strings'],
    [{ ...IMAGE, Env: ['A=1', 2] }, 'Env: must be a list of strings'],
    [{ ...IMAGE, Cmd: ['echo', 1] }, 'Cmd: must be a list of strings'],
    [{ ...IMAGE, Entrypoint: [true] }, 'Entrypoint: must be a list of strings'],
    [{ ...IMAGE, WorkingDir: 5 }, 'WorkingDir: must be a string'],
    [{ ...IMAGE, User: 0 }, 'User: must be a string'],
    [{ ...IMAGE, StopSignal: 9 }, 'StopSignal: must be a string'],
    [{ ...IMAGE, HostConfig: { NetworkMode: 1 } }, 'HostConfig.NetworkMode: must be a string'],
    [
      { ...IMAGE, ExposedPorts: { http: {} } },
      'ExposedPorts: "http" is not PORT/PROTOCOL with a port from 1 to 65535',
    ],
    [
      { ...IMAGE, ExposedPorts: { '80/icmp': {} } },
      'ExposedPorts: "80/icmp" is not PORT/PROTOCOL with a port from 1 to 65535',
    ],
    [
      { ...IMAGE, ExposedPorts: { '70000/tcp': {} } },
      'ExposedPorts: "70000/tcp" is not PORT/PROTOCOL with a port from 1 to 65535',
    ],
    [
      { ...IMAGE, ExposedPorts: { '0/tcp': {} } },
      'ExposedPorts: "0/tcp" is not PORT/PROTOCOL with a port from 1 to 65535',
    ],
    [
      { ...IMAGE, HostConfig: { ExtraHosts: ['db:bogus'] } },
      'HostConfig.ExtraHosts: "db:bogus" is not HOST:IP',
    ],
    [{ ...IMAGE, Healthcheck: { Interval: 1e9, Retries: 9 } }, `Healthcheck: ${PARTIAL_HEALTHCHECK}`],
    [
      { ...IMAGE, Healthcheck: { Test: ['CMD', 'true'], Retries: -2 } },
      'Healthcheck.Retries: must be a whole number, 0 or more',
    ],
    [
      { ...IMAGE, HostConfig: { Mounts: [{ Type: 'volume', Source: '/etc', Target: '/d' }] } },
      'HostConfig.Mounts[0].Source: "/etc" is not a volume name; use a bind mount for a host path',
    ],
  ])('%j', (body, message) => {
    expect(refusal(body)).toBe(message);
  });

  test('the name is checked as every door checks it', () => {
    expect(() => create(IMAGE, '-db')).toThrow(
      new SpecError(
        '"-db" is not a valid name: use letters, digits, "_", "." and "-", starting with a letter or digit (at most 63)',
      ),
    );
  });
});

describe('containerFromCreateBody: PortBindings', () => {
  const published = (bindings: CreateBody['HostConfig']) => spec({ HostConfig: bindings }).ports;

  test.each([
    ['HostPort "" picks a free port on loopback', { HostIp: '', HostPort: '' }, '127.0.0.1', 0],
    ['HostPort "0" picks a free port on loopback', { HostIp: '', HostPort: '0' }, '127.0.0.1', 0],
    ['HostPort "8080" on loopback', { HostIp: '', HostPort: '8080' }, '127.0.0.1', 8080],
    ['no HostIp at all', { HostPort: '8080' }, '127.0.0.1', 8080],
    ['HostIp 0.0.0.0 publishes beyond this host', { HostIp: '0.0.0.0', HostPort: '8080' }, '0.0.0.0', 8080],
    ['HostIp 0.0.0.0 with a free port', { HostIp: '0.0.0.0', HostPort: '' }, '0.0.0.0', 0],
    ['HostIp 0.0.0.0 with HostPort "0"', { HostIp: '0.0.0.0', HostPort: '0' }, '0.0.0.0', 0],
    ['an IPv6 HostIp', { HostIp: '::1', HostPort: '8080' }, '::1', 8080],
    ['an IPv6 HostIp with a free port', { HostIp: '::', HostPort: '' }, '::', 0],
  ])('%s', (_what, binding, hostIp, hostPort) => {
    expect(published({ PortBindings: { '80/tcp': [binding] } })).toEqual([
      { hostIp, hostPort, containerPort: 80, protocol: 'tcp' },
    ]);
  });

  test('udp, several bindings of one port, and a null list', () => {
    expect(
      published({
        PortBindings: {
          '53/udp': [{ HostIp: '', HostPort: '5353' }],
          '80/tcp': [
            { HostIp: '', HostPort: '8081' },
            { HostIp: '0.0.0.0', HostPort: '8082' },
          ],
          '9000/tcp': null as unknown as [],
        },
      }),
    ).toEqual([
      { hostIp: '127.0.0.1', hostPort: 5353, containerPort: 53, protocol: 'udp' },
      { hostIp: '127.0.0.1', hostPort: 8081, containerPort: 80, protocol: 'tcp' },
      { hostIp: '0.0.0.0', hostPort: 8082, containerPort: 80, protocol: 'tcp' },
    ]);
  });

  test('a key without a protocol is TCP', () => {
    expect(published({ PortBindings: { '8080': [{ HostIp: '', HostPort: '9090' }] } })).toEqual([
      { hostIp: '127.0.0.1', hostPort: 9090, containerPort: 8080, protocol: 'tcp' },
    ]);
  });

  test.each([
    [
      { '80/tcp': [{ HostIp: '', HostPort: 'http' }] },
      'HostConfig.PortBindings: "http:80/tcp" is not a port mapping: "http" is not a port; use "HOST:CONTAINER", "CONTAINER" or "IP:HOST:CONTAINER", optionally with "/tcp" or "/udp"',
    ],
    [
      { '80/tcp': [{ HostIp: '', HostPort: '70000' }] },
      'HostConfig.PortBindings: "70000:80/tcp" is not a port mapping: 70000 is out of range 1-65535',
    ],
    [
      { '80/sctp': [{ HostIp: '', HostPort: '' }] },
      'HostConfig.PortBindings: "80/sctp" is not a port mapping: protocol "sctp" is not tcp or udp',
    ],
    [
      { '80/tcp': [{ HostIp: 'localhost', HostPort: '8080' }] },
      'HostConfig.PortBindings: "localhost:8080:80/tcp" is not a port mapping: "localhost" is not an IP address',
    ],
  ])('a bad binding %j is refused', (PortBindings, message) => {
    expect(refusal({ ...IMAGE, HostConfig: { PortBindings } })).toBe(message);
  });
});

describe('containerFromCreateBody: Binds, Mounts, Tmpfs and Volumes', () => {
  test.each([
    ['/host/data:/data', '/host/data:/data'],
    ['/host/data:/data:ro', '/host/data:/data:ro'],
    ['/host/data:/data:rw', '/host/data:/data'],
    ['/host/data:/data:z', '/host/data:/data'],
    ['/host/data:/data:Z', '/host/data:/data'],
    ['/host/data:/data:ro,z', '/host/data:/data:ro'],
    ['/host/data:/data:z,ro', '/host/data:/data:ro'],
    ['/host/data:/data:rw,Z', '/host/data:/data'],
    ['pgdata:/var/lib/postgresql/data', 'pgdata:/var/lib/postgresql/data'],
    ['pgdata:/var/lib/postgresql/data:ro,nocopy', 'pgdata:/var/lib/postgresql/data:ro'],
  ])('Binds %s -> %s', (bind, volume) => {
    expect(spec({ HostConfig: { Binds: [bind] } }).volumes).toEqual([volume]);
  });

  test.each([
    ['/data', 'HostConfig.Binds: "/data" is not SOURCE:TARGET[:OPTIONS]'],
    ['/a:/b:ro:extra', 'HostConfig.Binds: "/a:/b:ro:extra" is not SOURCE:TARGET[:OPTIONS]'],
  ])('Binds %s is refused', (bind, message) => {
    expect(refusal({ ...IMAGE, HostConfig: { Binds: [bind] } })).toBe(message);
  });

  test('Binds must be strings', () => {
    expect(refusal({ ...IMAGE, HostConfig: { Binds: [{ Source: '/a' }] } })).toBe(
      'HostConfig.Binds: must be a list of strings',
    );
  });

  test('Mounts: bind, named and anonymous volumes, tmpfs', () => {
    const made = spec({
      HostConfig: {
        Mounts: [
          { Type: 'bind', Source: '/host/init', Target: '/docker-entrypoint-initdb.d', ReadOnly: true },
          { Type: 'bind', Source: '/host/conf', Target: '/etc/app' },
          { Type: 'volume', Source: 'pgdata', Target: '/var/lib/postgresql/data' },
          { Type: 'volume', Source: 'shared', Target: '/shared', ReadOnly: true },
          { Type: 'volume', Source: '', Target: '/anon' },
          { Type: 'tmpfs', Source: '', Target: '/scratch' },
        ],
      },
    });
    expect(made.volumes).toEqual([
      '/host/init:/docker-entrypoint-initdb.d:ro',
      '/host/conf:/etc/app',
      'pgdata:/var/lib/postgresql/data',
      'shared:/shared:ro',
      '/anon',
    ]);
    expect(made.tmpfs).toEqual(['/scratch']);
  });

  test.each([
    [
      { Type: 'bind', Source: 'relative/dir', Target: '/data' },
      'HostConfig.Mounts[0].Source: a bind mount needs an absolute host path',
    ],
    [
      { Type: 'bind', Target: '/data' },
      'HostConfig.Mounts[0].Source: a bind mount needs an absolute host path',
    ],
    [
      { Type: 'npipe', Source: '//./pipe/docker_engine', Target: '/pipe' },
      'HostConfig.Mounts[0].Type: "npipe" is not supported; use bind, volume or tmpfs',
    ],
    [
      { Target: '/data' },
      'HostConfig.Mounts[0].Type: "undefined" is not supported; use bind, volume or tmpfs',
    ],
  ])('Mounts %j is refused', (mount, message) => {
    expect(refusal({ ...IMAGE, HostConfig: { Mounts: [mount] } })).toBe(message);
  });

  test('a bad mount is named by its index', () => {
    expect(
      refusal({
        ...IMAGE,
        HostConfig: {
          Mounts: [
            { Type: 'tmpfs', Source: '', Target: '/tmp' },
            { Type: 'cluster', Target: '/x' },
          ],
        },
      }),
    ).toBe('HostConfig.Mounts[1].Type: "cluster" is not supported; use bind, volume or tmpfs');
  });

  test('Tmpfs: a target alone, or with its options', () => {
    expect(spec({ HostConfig: { Tmpfs: { '/run': '', '/var/cache': 'size=64m,mode=1777' } } }).tmpfs).toEqual(
      ['/run', '/var/cache:size=64m,mode=1777'],
    );
  });

  test('Tmpfs entries come before tmpfs Mounts', () => {
    expect(
      spec({
        HostConfig: { Tmpfs: { '/run': '' }, Mounts: [{ Type: 'tmpfs', Source: '', Target: '/scratch' }] },
      }).tmpfs,
    ).toEqual(['/run', '/scratch']);
  });

  test('Volumes are anonymous volumes; Binds, Mounts and Volumes in that order', () => {
    expect(
      spec({
        Volumes: { '/anon': {}, '/cache': {} },
        HostConfig: {
          Binds: ['/host:/bound'],
          Mounts: [{ Type: 'volume', Source: 'named', Target: '/named' }],
        },
      }).volumes,
    ).toEqual(['/host:/bound', 'named:/named', '/anon', '/cache']);
  });
});

describe('containerFromCreateBody: Cmd and Entrypoint', () => {
  test.each([
    ['Entrypoint [] clears the image entrypoint', { Entrypoint: [] }, []],
    ['Entrypoint [""] clears the image entrypoint', { Entrypoint: [''] }, []],
    ['Entrypoint as one string', { Entrypoint: '/bin/sh' }, ['/bin/sh']],
    ['Entrypoint as a list', { Entrypoint: ['/bin/sh', '-c'] }, ['/bin/sh', '-c']],
  ])('%s', (_what, body, entrypoint) => {
    expect(spec(body as Partial<CreateBody>).entrypoint).toEqual(entrypoint);
  });

  test('Entrypoint absent or null keeps the image entrypoint', () => {
    expect(spec({})).not.toHaveProperty('entrypoint');
    expect(spec({ Entrypoint: null } as unknown as CreateBody)).not.toHaveProperty('entrypoint');
  });

  test('a string Cmd is one argument, as older clients mean it', () => {
    expect(spec({ Cmd: 'echo hello' } as unknown as CreateBody).command).toEqual(['echo hello']);
  });

  test('Cmd [] or absent keeps the image command; only Entrypoint can clear', () => {
    expect(spec({ Cmd: [] })).not.toHaveProperty('command');
    expect(spec({})).not.toHaveProperty('command');
    expect(spec({ Cmd: [''] }).command).toEqual(['']);
  });
});

describe('containerFromCreateBody: Healthcheck', () => {
  const NS_PER_S = 1_000_000_000;

  test('durations in nanoseconds become milliseconds', () => {
    expect(
      spec({
        Healthcheck: {
          Test: ['CMD-SHELL', 'pg_isready -U postgres'],
          Interval: 2 * NS_PER_S,
          Timeout: 500_000_000,
          StartPeriod: 10 * NS_PER_S,
          Retries: 5,
        },
      }).healthcheck,
    ).toEqual({
      test: ['CMD-SHELL', 'pg_isready -U postgres'],
      intervalMs: 2000,
      timeoutMs: 500,
      startPeriodMs: 10_000,
      retries: 5,
    });
  });

  test("unset or zero fields take Docker's defaults", () => {
    expect(
      spec({ Healthcheck: { Test: ['CMD', 'redis-cli', 'ping'], Interval: 0, Retries: 0 } }).healthcheck,
    ).toEqual({
      test: ['CMD', 'redis-cli', 'ping'],
      intervalMs: 30_000,
      timeoutMs: 30_000,
      startPeriodMs: 0,
      retries: 3,
    });
  });

  test('a duration is rounded to the nearest millisecond', () => {
    const check = spec({
      Healthcheck: { Test: ['CMD', 'true'], Interval: 1_499_999, Timeout: 1_500_000 },
    }).healthcheck;
    expect(check).toMatchObject({ intervalMs: 1, timeoutMs: 2 });
  });

  test('["NONE"] turns the image healthcheck off', () => {
    expect(spec({ Healthcheck: { Test: ['NONE'] } }).healthcheck).toBe('none');
  });

  test('no Test, or an empty one, keeps the image healthcheck', () => {
    expect(spec({ Healthcheck: { Test: [] } })).not.toHaveProperty('healthcheck');
    expect(spec({})).not.toHaveProperty('healthcheck');
  });

  test.each([
    [{ Test: ['pg_isready'] }, 'Healthcheck.Test: must start with "CMD", "CMD-SHELL" or "NONE"'],
    [{ Test: 'CMD-SHELL true' }, 'Healthcheck.Test: must be a list of strings'],
    [{ Test: ['CMD', 'true'], Interval: -1 }, 'Healthcheck.Interval: must be a duration in nanoseconds'],
    [{ Test: ['CMD', 'true'], Timeout: -5 }, 'Healthcheck.Timeout: must be a duration in nanoseconds'],
    [
      { Test: ['CMD', 'true'], StartPeriod: Number.POSITIVE_INFINITY },
      'Healthcheck.StartPeriod: must be a duration in nanoseconds',
    ],
  ])('%j is refused', (Healthcheck, message) => {
    expect(refusal({ ...IMAGE, Healthcheck })).toBe(message);
  });
});

describe('containerFromCreateBody: Memory and NanoCpus', () => {
  const MIB = 1024 * 1024;

  test.each([
    [64 * MIB, 64],
    [64 * MIB + 1, 65],
    [100_000_000, 96],
    [1024 * MIB, 1024],
  ])('Memory %d bytes is rounded up to %d MiB', (Memory, memoryMiB) => {
    expect(spec({ HostConfig: { Memory } }).memoryMiB).toBe(memoryMiB);
  });

  test('Memory 0 or absent is the default', () => {
    expect(spec({ HostConfig: { Memory: 0 } })).not.toHaveProperty('memoryMiB');
    expect(spec({ HostConfig: {} })).not.toHaveProperty('memoryMiB');
  });

  test.each([
    [1, 'HostConfig.Memory: 1 MiB is too small for a VM; give at least 64 MiB'],
    [6 * MIB, 'HostConfig.Memory: 6 MiB is too small for a VM; give at least 64 MiB'],
    [63 * MIB, 'HostConfig.Memory: 63 MiB is too small for a VM; give at least 64 MiB'],
    [-1, 'HostConfig.Memory: must be a number of bytes'],
    [1.5, 'HostConfig.Memory: must be a number of bytes'],
  ])('Memory %d is refused', (Memory, message) => {
    expect(refusal({ ...IMAGE, HostConfig: { Memory } })).toBe(message);
  });

  test.each([
    [1, 1],
    [500_000_000, 1],
    [1_000_000_000, 1],
    [1_000_000_001, 2],
    [1_500_000_000, 2],
    [4_000_000_000, 4],
  ])('NanoCpus %d is rounded up to %d whole vCPUs', (NanoCpus, cpus) => {
    expect(spec({ HostConfig: { NanoCpus } }).cpus).toBe(cpus);
  });

  test('NanoCpus 0 or absent is the default', () => {
    expect(spec({ HostConfig: { NanoCpus: 0 } })).not.toHaveProperty('cpus');
    expect(spec({})).not.toHaveProperty('cpus');
  });

  test.each([-1_000_000_000, 0.5])('NanoCpus %d is refused', (NanoCpus) => {
    expect(refusal({ ...IMAGE, HostConfig: { NanoCpus } })).toBe(
      'HostConfig.NanoCpus: must be a whole number',
    );
  });
});

describe('containerFromCreateBody: ExtraHosts', () => {
  test('HOST:IP and HOST=IP, IPv6 too', () => {
    expect(
      spec({ HostConfig: { ExtraHosts: ['db:10.0.0.5', 'cache=10.0.0.6', 'v6:::1'] } }).extraHosts,
    ).toEqual([
      { host: 'db', ip: '10.0.0.5' },
      { host: 'cache', ip: '10.0.0.6' },
      { host: 'v6', ip: '::1' },
    ]);
  });

  test('none given: no key', () => {
    expect(spec({ HostConfig: { ExtraHosts: [] } })).not.toHaveProperty('extraHosts');
  });

  test.each([
    [
      'host.docker.internal:host-gateway',
      'HostConfig.ExtraHosts: "host.docker.internal:host-gateway" is not HOST:IP (host-gateway would reach this host, which guests never do)',
    ],
    [
      'gw=host-gateway',
      'HostConfig.ExtraHosts: "gw=host-gateway" is not HOST:IP (host-gateway would reach this host, which guests never do)',
    ],
    ['justahost', 'HostConfig.ExtraHosts: "justahost" is not HOST:IP'],
    ['db:', 'HostConfig.ExtraHosts: "db:" is not HOST:IP'],
    ['two words:10.0.0.1', 'HostConfig.ExtraHosts: "two words:10.0.0.1" is not HOST:IP'],
  ])('%s is refused', (entry, message) => {
    expect(refusal({ ...IMAGE, HostConfig: { ExtraHosts: [entry] } })).toBe(message);
  });
});

describe('containerFromCreateBody: networks and aliases', () => {
  test.each([
    ['absent', {}],
    ['NetworkMode ""', { HostConfig: { NetworkMode: '' } }],
    ['NetworkMode default', { HostConfig: { NetworkMode: 'default' } }],
    ['NetworkMode bridge', { HostConfig: { NetworkMode: 'bridge' } }],
    ['an endpoint on bridge', { NetworkingConfig: { EndpointsConfig: { bridge: {} } } }],
  ] as [string, Partial<CreateBody>][])('%s: the default network, which is undefined', (_what, body) => {
    expect(create({ ...IMAGE, ...body }).network).toBeUndefined();
  });

  test('a named NetworkMode is the network', () => {
    expect(create({ ...IMAGE, HostConfig: { NetworkMode: 'backend' } }).network).toBe('backend');
  });

  test('an endpoint names the network when NetworkMode does not; its aliases are the spec aliases', () => {
    const result = create(
      {
        ...IMAGE,
        NetworkingConfig: { EndpointsConfig: { backend: { Aliases: ['database', 'db', 'pg', 'database'] } } },
      },
      'db',
    );
    expect(result.network).toBe('backend');
    // The container's own name is how it is reached already; a repeated alias is one alias.
    expect(result.spec.aliases).toEqual(['database', 'pg']);
  });

  test('NetworkMode and its endpoint together, as the docker CLI sends them', () => {
    const result = create({
      ...IMAGE,
      HostConfig: { NetworkMode: 'backend' },
      NetworkingConfig: { EndpointsConfig: { backend: { Aliases: ['database'] } } },
    });
    expect(result.network).toBe('backend');
    expect(result.spec.aliases).toEqual(['database']);
  });

  test('an endpoint without aliases', () => {
    expect(create({ ...IMAGE, NetworkingConfig: { EndpointsConfig: { backend: {} } } }).spec.aliases).toEqual(
      [],
    );
  });

  test('more than one network is refused', () => {
    expect(refusal({ ...IMAGE, NetworkingConfig: { EndpointsConfig: { a: {}, b: {} } } })).toBe(
      'NetworkingConfig.EndpointsConfig: a container is created on one network; connect it to others afterwards',
    );
  });

  test('aliases must be strings', () => {
    expect(refusal({ ...IMAGE, NetworkingConfig: { EndpointsConfig: { backend: { Aliases: [1] } } } })).toBe(
      'NetworkingConfig.EndpointsConfig.Aliases: must be a list of strings',
    );
  });
});

describe('containerFromCreateBody: Labels', () => {
  test('absent or null labels are none', () => {
    expect(spec({}).labels).toEqual({});
    expect(spec({ Labels: null } as unknown as CreateBody).labels).toEqual({});
  });

  test('the labels are copied, not shared with the body', () => {
    const Labels = { owner: 'ci' };
    const made = spec({ Labels });
    Labels.owner = 'changed';
    expect(made.labels).toEqual({ owner: 'ci' });
  });

  test.each([[{ replicas: 3 }], [{ enabled: true }], [{ nested: {} }], [['a=b']], ['a=b']])(
    'Labels %j is refused',
    (Labels) => {
      expect(refusal({ ...IMAGE, Labels })).toBe('Labels: must be an object of strings');
    },
  );
});

describe('containerFromCreateBody: fields accepted without effect are warned about', () => {
  test('Dns, DnsSearch and DnsOptions', () => {
    expect(
      create({
        ...IMAGE,
        Hostname: 'pg.local',
        StopTimeout: 30,
        HostConfig: { Dns: ['8.8.8.8'], DnsSearch: ['example.com'], DnsOptions: ['ndots:2'] },
      }).warnings,
    ).toEqual([
      "HostConfig.Dns is ignored: the job network's resolver is used",
      "HostConfig.DnsSearch is ignored: the job network's resolver is used",
      "HostConfig.DnsOptions is ignored: the job network's resolver is used",
    ]);
  });

  test('empty Dns lists and an empty Hostname are no warning', () => {
    expect(
      create({ ...IMAGE, Hostname: '', HostConfig: { Dns: [], DnsSearch: [], DnsOptions: [] } }).warnings,
    ).toEqual([]);
  });
});

test('a read-only anonymous volume stays read-only', () => {
  const { spec } = create({
    ...IMAGE,
    HostConfig: { Mounts: [{ Type: 'volume', Source: '', Target: '/d', ReadOnly: true }] },
  });
  expect(spec.volumes).toEqual(['/d:ro']);
});

test("the Docker socket bound in (the runner, Ryuk) becomes this daemon's API inside the VM, not a host mount", () => {
  const { spec, warnings } = create({
    ...IMAGE,
    HostConfig: {
      Binds: ['/var/run/docker.sock:/var/run/docker.sock', '/home/runner/work:/__w'],
      Mounts: [{ Type: 'bind', Source: '/run/hyper/docker.sock', Target: '/tmp/docker.sock' }],
    },
  });
  expect(spec.volumes).toEqual(['/home/runner/work:/__w']);
  expect(spec.apiSockets).toEqual(['/var/run/docker.sock', '/tmp/docker.sock']);
  expect(warnings).toEqual([]);
});

test('a Docker socket bound to a path the guest cannot serve is refused, naming the bind', () => {
  expect(() =>
    create({ ...IMAGE, HostConfig: { Binds: [`/var/run/docker.sock:/${'d/'.repeat(60)}docker.sock`] } }),
  ).toThrow(/HostConfig.Binds: ".*": a socket path in the container is at most 107 bytes/);
  expect(() => create({ ...IMAGE, HostConfig: { Binds: ['/var/run/docker.sock:relative.sock'] } })).toThrow(
    'HostConfig.Binds: "/var/run/docker.sock:relative.sock": the Docker socket\'s path in the container must be absolute, without whitespace or ".."',
  );
});

test('cgroup limits are accepted with a warning each; their zero values with none; ulimits and the pids limit are set', () => {
  const { warnings, spec } = create({
    ...IMAGE,
    HostConfig: {
      Ulimits: [{ Name: 'nofile', Soft: 10, Hard: 10 }],
      ShmSize: 0,
      PidsLimit: 100,
      CpuShares: 512,
      OomKillDisable: false,
    },
  });
  expect(warnings).toEqual([
    'HostConfig.CpuShares is ignored: a VM is limited by its memory and CPUs (Memory, NanoCpus)',
  ]);
  expect(spec.guest).toMatchObject({ pidsLimit: 100, ulimits: { nofile: { soft: 10, hard: 10 } } });
  expect(create({ ...IMAGE, HostConfig: { PidsLimit: -1 } }).spec.guest).toBeUndefined();
  expect(() => create({ ...IMAGE, HostConfig: { PidsLimit: 1.5 } })).toThrow(
    'HostConfig.PidsLimit: must be a whole number (-1 or 0 for no limit)',
  );
});
