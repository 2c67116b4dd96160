import { createHash } from 'node:crypto';
import type Docker from 'dockerode';
import type { VmState } from '../engine/container.js';
import type { HealthState } from '../engine/health-monitor.js';
import type { NamedNetwork } from '../engine/networks.js';
import type { VmRecord } from '../engine/record.js';
import type { HealthcheckSpec } from '../images/run-config.js';
import { humanDuration } from './protocol.js';

/** The default network every Docker daemon has, as clients look it up; here it is the job's network. */
export const BRIDGE = {
  name: 'bridge',
  id: createHash('sha256').update('hyper-services default network').digest('hex'),
} as const;

/** Docker's zero time, what inspect shows for a time that has not happened. */
export const ZERO_TIME = '0001-01-01T00:00:00Z';

const NS_PER_MS = 1_000_000;

/** What the daemon knows about a container beyond its record: when it finished, whether it goes when it ends. */
export interface ContainerExtra {
  autoRemove: boolean;
  finishedAt?: string | undefined;
  /** The network address and gateway it has on the job network. */
  address?: { ip: string; prefix: number; gateway: string; mac?: string | undefined } | undefined;
}

type DockerState = 'created' | 'running' | 'exited' | 'dead';

export function isCreated(state: VmState): boolean {
  return !state.running && state.created === true;
}

export function dockerState(state: VmState): DockerState {
  if (state.running) return 'running';
  if (state.created) return 'created';
  return 'exited';
}

/** The exit code Docker reports: the command's, 137 for a kill the guest could not report, 255 for a crash. */
export function exitCodeOf(state: VmState): number {
  if (state.running || isCreated(state)) return 0;
  if (state.crash) return 255;
  return state.exitCode ?? 255;
}

/** `docker ps`'s Status column. Pure. */
export function statusText(
  state: VmState,
  record: VmRecord,
  extra: ContainerExtra,
  now: number,
  health?: HealthState,
): string {
  if (state.running) {
    const since = record.startedAt ? (now - Date.parse(record.startedAt)) / 1000 : 0;
    const healthText = health
      ? ` (${health.status === 'starting' ? 'health: starting' : health.status})`
      : '';
    return `Up ${humanDuration(since)}${healthText}`;
  }
  if (isCreated(state)) return 'Created';
  const ago = extra.finishedAt ? ` ${humanDuration((now - Date.parse(extra.finishedAt)) / 1000)} ago` : '';
  return `Exited (${exitCodeOf(state)})${ago}`;
}

function portKey(port: { containerPort: number; protocol: string }): string {
  return `${port.containerPort}/${port.protocol}`;
}

function healthConfig(check: HealthcheckSpec | undefined): Docker.HealthConfig | undefined {
  if (!check) return undefined;
  return {
    Test: check.test,
    Interval: check.intervalMs * NS_PER_MS,
    Timeout: check.timeoutMs * NS_PER_MS,
    StartPeriod: check.startPeriodMs * NS_PER_MS,
    Retries: check.retries,
  };
}

function networkNames(record: VmRecord): string[] {
  return [BRIDGE.name, ...Object.keys(record.networks ?? {})];
}

function endpoint(record: VmRecord, name: string, networks: readonly NamedNetwork[], extra: ContainerExtra) {
  const named = networks.find((n) => n.name === name);
  return {
    IPAMConfig: null,
    Links: null,
    Aliases:
      name === BRIDGE.name
        ? null
        : [...(record.networks?.[name]?.aliases ?? []), record.id?.slice(0, 12) ?? record.name],
    NetworkID: named?.id ?? BRIDGE.id,
    EndpointID: record.id ?? '',
    Gateway: extra.address?.gateway ?? '',
    IPAddress: extra.address?.ip ?? '',
    IPPrefixLen: extra.address?.prefix ?? 0,
    IPv6Gateway: '',
    GlobalIPv6Address: '',
    GlobalIPv6PrefixLen: 0,
    MacAddress: extra.address?.mac ?? '',
  };
}

/** GET /containers/{id}/json. Pure. */
export function containerInspect(
  record: VmRecord,
  state: VmState,
  health: HealthState | undefined,
  networks: readonly NamedNetwork[],
  extra: ContainerExtra,
): Record<string, unknown> {
  const [path = '', ...args] = record.argv ?? [];
  const dState = dockerState(state);
  const ports: Record<string, { HostIp: string; HostPort: string }[] | null> = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const port of record.ports) {
    const key = portKey(port);
    const binding = { HostIp: port.hostIp, HostPort: String(port.hostPort) };
    (bindings[key] ??= []).push({
      HostIp: port.hostIp === '127.0.0.1' ? '' : port.hostIp,
      HostPort: String(port.hostPort),
    });
    if (state.running) (ports[key] ??= []).push(binding);
  }
  return {
    Id: record.id ?? '',
    Created: record.createdAt,
    Path: path,
    Args: args,
    State: {
      Status: dState,
      Running: state.running,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: 0,
      ExitCode: exitCodeOf(state),
      Error: !state.running && state.crash ? state.crash : '',
      StartedAt: record.startedAt ?? ZERO_TIME,
      FinishedAt: !state.running && !isCreated(state) ? (extra.finishedAt ?? ZERO_TIME) : ZERO_TIME,
      ...(health
        ? {
            Health: {
              Status: health.status,
              FailingStreak: health.failingStreak,
              Log: health.log.map((entry) => ({
                Start: entry.start,
                End: entry.end,
                ExitCode: entry.exitCode,
                Output: entry.output,
              })),
            },
          }
        : {}),
    },
    Image: record.imageConfigDigest,
    ResolvConfPath: '',
    HostnamePath: '',
    HostsPath: '',
    LogPath: '',
    Name: `/${record.name}`,
    RestartCount: state.restarts ?? 0,
    Driver: 'hyper-microvm',
    Platform: 'linux',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    ExecIDs: null,
    HostConfig: {
      Binds: null,
      NetworkMode: Object.keys(record.networks ?? {})[0] ?? 'default',
      PortBindings: bindings,
      AutoRemove: extra.autoRemove,
      Memory: record.machine.memoryMiB * 1024 * 1024,
      NanoCpus: record.machine.cpus * 1e9,
      RestartPolicy: {
        Name: record.restart?.policy ?? 'no',
        MaximumRetryCount: record.restart?.maxRetries ?? 0,
      },
      Privileged: false,
      Runtime: 'hyper-microvm',
      // Logs are read through the API, as json-file's are; compose skips a container's logs without a type.
      LogConfig: { Type: 'json-file', Config: {} },
    },
    Config: {
      Hostname: record.name,
      Domainname: '',
      User: record.user,
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      ExposedPorts: Object.fromEntries(record.ports.map((p) => [portKey(p), {}])),
      Tty: false,
      OpenStdin: false,
      StdinOnce: false,
      Env: record.env ?? [],
      Cmd: args.length > 0 || path ? [path, ...args] : null,
      Image: record.image,
      Volumes: null,
      WorkingDir: record.workdir,
      Entrypoint: null,
      Labels: record.labels,
      ...(record.healthcheck ? { Healthcheck: healthConfig(record.healthcheck) } : {}),
    },
    NetworkSettings: {
      Bridge: '',
      SandboxID: '',
      Ports: ports,
      IPAddress: extra.address?.ip ?? '',
      IPPrefixLen: extra.address?.prefix ?? 0,
      Gateway: extra.address?.gateway ?? '',
      MacAddress: extra.address?.mac ?? '',
      Networks: Object.fromEntries(
        networkNames(record).map((name) => [name, endpoint(record, name, networks, extra)]),
      ),
    },
    Mounts: (record.disks ?? []).map((disk) => ({
      Type: disk.image ? 'image' : disk.volume ? 'volume' : 'bind',
      ...(disk.volume ? { Name: disk.volume } : {}),
      Source: disk.image ? disk.image.name : disk.volume ? '' : disk.path,
      Destination: disk.target,
      Driver: disk.volume ? 'local' : '',
      Mode: disk.readOnly ? 'ro' : '',
      RW: !disk.readOnly,
      Propagation: '',
    })),
  };
}

/** One row of GET /containers/json. Pure. */
export function containerSummary(
  record: VmRecord,
  state: VmState,
  health: HealthState | undefined,
  networks: readonly NamedNetwork[],
  extra: ContainerExtra,
  now: number,
): Record<string, unknown> {
  return {
    Id: record.id ?? '',
    Names: [`/${record.name}`],
    Image: record.image,
    ImageID: record.imageConfigDigest,
    Command: (record.argv ?? []).join(' '),
    Created: Math.floor(Date.parse(record.createdAt) / 1000),
    Ports: record.ports.map((p) => ({
      IP: p.hostIp,
      PrivatePort: p.containerPort,
      PublicPort: p.hostPort,
      Type: p.protocol,
    })),
    Labels: record.labels,
    State: dockerState(state),
    Status: statusText(state, record, extra, now, health),
    HostConfig: { NetworkMode: Object.keys(record.networks ?? {})[0] ?? 'default' },
    NetworkSettings: {
      Networks: Object.fromEntries(
        networkNames(record).map((name) => [name, endpoint(record, name, networks, extra)]),
      ),
    },
    Mounts: [],
  };
}

/** GET /networks/{id}: a named network, or the default one. Pure. */
export function networkInspect(
  network: { id: string; name: string; labels: Record<string, string>; createdAt?: string },
  members: readonly VmRecord[],
  subnet: { subnet: string; gateway: string } | undefined,
): Record<string, unknown> {
  return {
    Name: network.name,
    Id: network.id,
    Created: network.createdAt ?? ZERO_TIME,
    Scope: 'local',
    Driver: 'bridge',
    EnableIPv6: false,
    IPAM: {
      Driver: 'default',
      Options: null,
      Config: subnet ? [{ Subnet: subnet.subnet, Gateway: subnet.gateway }] : [],
    },
    Internal: false,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: Object.fromEntries(
      members.map((record) => [
        record.id ?? record.name,
        { Name: record.name, EndpointID: record.id ?? '', MacAddress: '', IPv4Address: '', IPv6Address: '' },
      ]),
    ),
    Options: {},
    Labels: network.labels,
  };
}
