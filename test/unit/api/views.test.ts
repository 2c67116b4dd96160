import {
  BRIDGE,
  containerInspect,
  containerSummary,
  exitCodeOf,
  statusText,
  ZERO_TIME,
  type ContainerExtra,
} from '../../../src/api/views.js';
import type { VmState } from '../../../src/engine/container.js';
import type { HealthState } from '../../../src/engine/health-monitor.js';
import type { NamedNetwork } from '../../../src/engine/networks.js';
import type { VmRecord } from '../../../src/engine/record.js';

const ID = `c0ffee${'0123456789'.repeat(5)}abcdefgh`.slice(0, 64);
const CREATED = '2025-01-02T03:04:05.000Z';
const STARTED = '2025-01-02T03:04:10.000Z';
const FINISHED = '2025-01-02T03:10:00.000Z';
const at = (iso: string, plusSeconds: number): number => Date.parse(iso) + plusSeconds * 1000;

/** A VM made by `docker run -p 5432 -v pgdata:... --network backend --network-alias database postgres:16`. */
function record(overrides: Partial<VmRecord> = {}): VmRecord {
  return {
    id: ID,
    name: 'db',
    image: 'postgres:16',
    imageDigest: 'sha256:1111',
    imageConfigDigest: 'sha256:2222',
    imageBlobs: ['sha256:2222', 'sha256:3333'],
    createdAt: CREATED,
    machine: {
      name: 'db',
      dir: '/state/vms/db',
      accel: 'kvm',
      memoryMiB: 1024,
      cpus: 2,
      bundle: { version: 'v1', kernel: '/guest/vmlinux', initrd: '/guest/initrd', connect: '/guest/connect' },
      rootDisk: '/state/vms/db/root.qcow2',
      guestFiles: [],
      ports: [],
    },
    ports: [
      { hostIp: '127.0.0.1', hostPort: 49153, containerPort: 5432, protocol: 'tcp' },
      { hostIp: '0.0.0.0', hostPort: 8125, containerPort: 8125, protocol: 'udp' },
    ],
    user: 'postgres',
    workdir: '/var/lib/postgresql',
    startedAt: STARTED,
    labels: { 'org.testcontainers': 'true' },
    disks: [
      {
        serial: 'vol-pgdata',
        path: '/state/volumes/pgdata.qcow2',
        target: '/var/lib/postgresql/data',
        readOnly: false,
        copyUp: true,
        volume: 'pgdata',
      },
      {
        serial: 'bind-1',
        path: '/state/vms/db/disks/bind-1.qcow2',
        target: '/docker-entrypoint-initdb.d',
        readOnly: true,
        copyUp: false,
      },
    ],
    healthcheck: {
      test: ['CMD-SHELL', 'pg_isready'],
      intervalMs: 2000,
      timeoutMs: 500,
      startPeriodMs: 10_000,
      retries: 5,
    },
    networks: { backend: { aliases: ['database'] } },
    argv: ['docker-entrypoint.sh', 'postgres'],
    env: ['PGDATA=/var/lib/postgresql/data'],
    ...overrides,
  };
}

const RUNNING: VmState = { running: true };
const CREATED_STATE: VmState = { running: false, created: true, exitCode: undefined };
const EXITED: VmState = { running: false, exitCode: 3 };
const KILLED: VmState = { running: false, exitCode: 137 };
const VANISHED: VmState = { running: false, exitCode: undefined };
const CRASHED: VmState = {
  running: false,
  exitCode: undefined,
  crash: 'kernel panic: Attempted to kill init!',
  consoleTail: '...',
};

const BACKEND: NamedNetwork = {
  id: 'b'.repeat(64),
  name: 'backend',
  labels: {},
  createdAt: CREATED,
};
const ADDRESS = { ip: '10.89.0.5', prefix: 24, gateway: '10.89.0.1', mac: '52:54:00:12:34:56' };
const EXTRA: ContainerExtra = { autoRemove: false, address: ADDRESS };
const HEALTHY: HealthState = {
  status: 'healthy',
  failingStreak: 0,
  log: [{ start: STARTED, end: STARTED, exitCode: 0, output: 'accepting connections' }],
};

describe('exitCodeOf', () => {
  test.each([
    ['running', RUNNING, 0],
    ['created, never started', CREATED_STATE, 0],
    ['exited with its own code', EXITED, 3],
    ['exited with code 0', { running: false, exitCode: 0 } as VmState, 0],
    ['killed', KILLED, 137],
    ['gone without a report', VANISHED, 255],
    ['crashed', CRASHED, 255],
    ['crashed after reporting a code', { ...CRASHED, exitCode: 0 } as VmState, 255],
  ])('%s: %d', (_what, state, code) => {
    expect(exitCodeOf(state)).toBe(code);
  });
});

describe("statusText: docker ps's Status column", () => {
  const now = at(STARTED, 10);

  test('running: how long it has been up', () => {
    expect(statusText(RUNNING, record(), EXTRA, now)).toBe('Up 10 seconds');
    expect(statusText(RUNNING, record(), EXTRA, at(STARTED, 3 * 3600))).toBe('Up 3 hours');
  });

  test.each([
    ['starting', 'Up 10 seconds (health: starting)'],
    ['healthy', 'Up 10 seconds (healthy)'],
    ['unhealthy', 'Up 10 seconds (unhealthy)'],
  ] as const)('running and %s', (status, text) => {
    expect(statusText(RUNNING, record(), EXTRA, now, { status, failingStreak: 0, log: [] })).toBe(text);
  });

  test('running with no start time recorded', () => {
    expect(statusText(RUNNING, record({ startedAt: undefined }), EXTRA, now)).toBe('Up Less than a second');
  });

  test('created', () => {
    expect(statusText(CREATED_STATE, record({ startedAt: undefined }), EXTRA, now)).toBe('Created');
  });

  test('exited: its code and how long ago', () => {
    const extra = { ...EXTRA, finishedAt: FINISHED };
    expect(statusText(EXITED, record(), extra, at(FINISHED, 5 * 60))).toBe('Exited (3) 5 minutes ago');
    expect(statusText(KILLED, record(), extra, at(FINISHED, 30))).toBe('Exited (137) 30 seconds ago');
    expect(statusText(CRASHED, record(), extra, at(FINISHED, 2 * 86400))).toBe('Exited (255) 2 days ago');
  });

  test('exited with no finish time: the code alone', () => {
    expect(statusText(EXITED, record(), EXTRA, now)).toBe('Exited (3)');
  });

  test('health is not shown once it has stopped', () => {
    expect(statusText(EXITED, record(), EXTRA, now, HEALTHY)).toBe('Exited (3)');
  });
});

describe('containerInspect: GET /containers/{id}/json', () => {
  test('a running container, in full', () => {
    expect(containerInspect(record(), RUNNING, HEALTHY, [BACKEND], EXTRA)).toEqual({
      Id: ID,
      Created: CREATED,
      Path: 'docker-entrypoint.sh',
      Args: ['postgres'],
      State: {
        Status: 'running',
        Running: true,
        Paused: false,
        Restarting: false,
        OOMKilled: false,
        Dead: false,
        Pid: 0,
        ExitCode: 0,
        Error: '',
        StartedAt: STARTED,
        FinishedAt: ZERO_TIME,
        Health: {
          Status: 'healthy',
          FailingStreak: 0,
          Log: [{ Start: STARTED, End: STARTED, ExitCode: 0, Output: 'accepting connections' }],
        },
      },
      Image: 'sha256:2222',
      ResolvConfPath: '',
      HostnamePath: '',
      HostsPath: '',
      LogPath: '',
      Name: '/db',
      RestartCount: 0,
      Driver: 'hyper-microvm',
      Platform: 'linux',
      MountLabel: '',
      ProcessLabel: '',
      AppArmorProfile: '',
      ExecIDs: null,
      HostConfig: {
        Binds: null,
        NetworkMode: 'backend',
        PortBindings: {
          '5432/tcp': [{ HostIp: '', HostPort: '49153' }],
          '8125/udp': [{ HostIp: '0.0.0.0', HostPort: '8125' }],
        },
        AutoRemove: false,
        Memory: 1024 * 1024 * 1024,
        NanoCpus: 2_000_000_000,
        RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
        Privileged: false,
        Runtime: 'hyper-microvm',
        LogConfig: { Type: 'json-file', Config: {} },
      },
      Config: {
        Hostname: 'db',
        Domainname: '',
        User: 'postgres',
        AttachStdin: false,
        AttachStdout: false,
        AttachStderr: false,
        ExposedPorts: { '5432/tcp': {}, '8125/udp': {} },
        Tty: false,
        OpenStdin: false,
        StdinOnce: false,
        Env: ['PGDATA=/var/lib/postgresql/data'],
        Cmd: ['docker-entrypoint.sh', 'postgres'],
        Image: 'postgres:16',
        Volumes: null,
        WorkingDir: '/var/lib/postgresql',
        Entrypoint: null,
        Labels: { 'org.testcontainers': 'true' },
        Healthcheck: {
          Test: ['CMD-SHELL', 'pg_isready'],
          Interval: 2_000_000_000,
          Timeout: 500_000_000,
          StartPeriod: 10_000_000_000,
          Retries: 5,
        },
      },
      NetworkSettings: {
        Bridge: '',
        SandboxID: '',
        Ports: {
          '5432/tcp': [{ HostIp: '127.0.0.1', HostPort: '49153' }],
          '8125/udp': [{ HostIp: '0.0.0.0', HostPort: '8125' }],
        },
        IPAddress: '10.89.0.5',
        IPPrefixLen: 24,
        Gateway: '10.89.0.1',
        MacAddress: '52:54:00:12:34:56',
        Networks: {
          bridge: {
            IPAMConfig: null,
            Links: null,
            Aliases: null,
            NetworkID: BRIDGE.id,
            EndpointID: ID,
            Gateway: '10.89.0.1',
            IPAddress: '10.89.0.5',
            IPPrefixLen: 24,
            IPv6Gateway: '',
            GlobalIPv6Address: '',
            GlobalIPv6PrefixLen: 0,
            MacAddress: '52:54:00:12:34:56',
          },
          backend: {
            IPAMConfig: null,
            Links: null,
            Aliases: ['database', ID.slice(0, 12)],
            NetworkID: BACKEND.id,
            EndpointID: ID,
            Gateway: '10.89.0.1',
            IPAddress: '10.89.0.5',
            IPPrefixLen: 24,
            IPv6Gateway: '',
            GlobalIPv6Address: '',
            GlobalIPv6PrefixLen: 0,
            MacAddress: '52:54:00:12:34:56',
          },
        },
      },
      Mounts: [
        {
          Type: 'volume',
          Name: 'pgdata',
          Source: '',
          Destination: '/var/lib/postgresql/data',
          Driver: 'local',
          Mode: '',
          RW: true,
          Propagation: '',
        },
        expect.objectContaining({
          Type: 'bind',
          Destination: '/docker-entrypoint-initdb.d',
          Mode: 'ro',
          RW: false,
        }),
      ],
    });
  });

  test('created: no ports bound, no exit, no finish, and no health yet', () => {
    const inspect = containerInspect(record({ startedAt: undefined }), CREATED_STATE, undefined, [], EXTRA);
    expect(inspect.State).toEqual({
      Status: 'created',
      Running: false,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: 0,
      ExitCode: 0,
      Error: '',
      StartedAt: ZERO_TIME,
      FinishedAt: ZERO_TIME,
    });
    expect(inspect.NetworkSettings).toMatchObject({ Ports: {} });
    // What was asked for is still shown, as Docker shows a created container's bindings.
    expect(inspect.HostConfig).toMatchObject({
      PortBindings: {
        '5432/tcp': [{ HostIp: '', HostPort: '49153' }],
        '8125/udp': [{ HostIp: '0.0.0.0', HostPort: '8125' }],
      },
    });
  });

  test('exited: its code and when it finished', () => {
    const inspect = containerInspect(record(), EXITED, undefined, [BACKEND], {
      ...EXTRA,
      finishedAt: FINISHED,
    });
    expect(inspect.State).toMatchObject({
      Status: 'exited',
      Running: false,
      ExitCode: 3,
      Error: '',
      StartedAt: STARTED,
      FinishedAt: FINISHED,
    });
    expect(inspect.NetworkSettings).toMatchObject({ Ports: {} });
  });

  test('exited with no finish time known: the zero time', () => {
    expect(containerInspect(record(), KILLED, undefined, [], EXTRA).State).toMatchObject({
      Status: 'exited',
      ExitCode: 137,
      FinishedAt: ZERO_TIME,
    });
  });

  test('crashed: 255 and the reason as the error', () => {
    expect(containerInspect(record(), CRASHED, undefined, [], EXTRA).State).toMatchObject({
      Status: 'exited',
      Running: false,
      ExitCode: 255,
      Error: 'kernel panic: Attempted to kill init!',
    });
  });

  test('a record from before ids, networks, argv and healthchecks', () => {
    const old = record({
      id: undefined,
      networks: undefined,
      argv: undefined,
      env: undefined,
      disks: undefined,
      healthcheck: undefined,
    });
    const inspect = containerInspect(old, RUNNING, undefined, [], { autoRemove: true });
    expect(inspect).toMatchObject({
      Id: '',
      Path: '',
      Args: [],
      Mounts: [],
      HostConfig: { NetworkMode: 'default', AutoRemove: true },
      Config: { Env: [], Cmd: null },
      NetworkSettings: { IPAddress: '', IPPrefixLen: 0, Gateway: '', MacAddress: '' },
    });
    expect(inspect.Config).not.toHaveProperty('Healthcheck');
    expect(inspect.State).not.toHaveProperty('Health');
    expect(Object.keys((inspect.NetworkSettings as { Networks: object }).Networks)).toEqual(['bridge']);
  });

  test('an alias-less endpoint on a named network is known by the name when there is no id', () => {
    const inspect = containerInspect(
      record({ id: undefined, networks: { backend: { aliases: [] } } }),
      RUNNING,
      undefined,
      [BACKEND],
      EXTRA,
    );
    expect(inspect.NetworkSettings).toMatchObject({
      Networks: { backend: { Aliases: ['db'], EndpointID: '' } },
    });
  });
});

describe('containerSummary: one row of GET /containers/json', () => {
  test('a running container, in full', () => {
    expect(containerSummary(record(), RUNNING, HEALTHY, [BACKEND], EXTRA, at(STARTED, 10))).toEqual({
      Id: ID,
      Names: ['/db'],
      Image: 'postgres:16',
      ImageID: 'sha256:2222',
      Command: 'docker-entrypoint.sh postgres',
      Created: Date.parse(CREATED) / 1000,
      Ports: [
        { IP: '127.0.0.1', PrivatePort: 5432, PublicPort: 49153, Type: 'tcp' },
        { IP: '0.0.0.0', PrivatePort: 8125, PublicPort: 8125, Type: 'udp' },
      ],
      Labels: { 'org.testcontainers': 'true' },
      State: 'running',
      Status: 'Up 10 seconds (healthy)',
      HostConfig: { NetworkMode: 'backend' },
      NetworkSettings: {
        Networks: {
          bridge: expect.objectContaining({ NetworkID: BRIDGE.id, IPAddress: '10.89.0.5', Aliases: null }),
          backend: expect.objectContaining({ NetworkID: BACKEND.id, Aliases: ['database', ID.slice(0, 12)] }),
        },
      },
      Mounts: [],
    });
  });

  test.each([
    ['created', CREATED_STATE, 'created', 'Created'],
    ['exited', EXITED, 'exited', 'Exited (3) 5 minutes ago'],
    ['crashed', CRASHED, 'exited', 'Exited (255) 5 minutes ago'],
  ])('%s', (_what, state, dockerState, status) => {
    const row = containerSummary(
      record(),
      state,
      undefined,
      [],
      { ...EXTRA, finishedAt: FINISHED },
      at(FINISHED, 5 * 60),
    );
    expect(row).toMatchObject({ State: dockerState, Status: status });
  });

  test('Created is whole seconds since the epoch', () => {
    const row = containerSummary(
      record({ createdAt: '2025-01-02T03:04:05.987Z' }),
      RUNNING,
      undefined,
      [],
      EXTRA,
      0,
    );
    expect(row.Created).toBe(1735787045);
  });
});
