import type Docker from 'dockerode';
import { parsePortSpec, PortSpecError, type PortSpec } from '../network/ports.js';
import { healthcheck, type HealthcheckSpec } from '../images/run-config.js';
import { isVolumeName } from '../storage/mounts.js';
import {
  CONTAINER_DEFAULTS,
  isHostname,
  parseHostEntry,
  PARTIAL_HEALTHCHECK,
  SpecError,
  validateName,
  type ContainerSpec,
  type GuestSettings,
  type RestartPolicy,
} from './container.js';
import {
  capabilityName,
  isSysctlName,
  RESTART_POLICIES,
  isGroupName,
  serviceCapabilities,
  ULIMITS,
} from '../guest/config.js';

/** The body of POST /containers/create, as Docker's API describes it (types from @types/dockerode). */
export type CreateBody = Docker.ContainerCreateOptions;

/** What a create asks for beyond the container itself: the daemon's part. */
export interface CreateRequest {
  spec: ContainerSpec;
  /** HostConfig.AutoRemove: removed once its command ends (docker run --rm). */
  autoRemove: boolean;
  /** The network named by NetworkMode or NetworkingConfig; undefined for the default one. */
  network: string | undefined;
  /** Fields accepted without effect, for the response's Warnings. */
  warnings: string[];
}

/** A create field that cannot be honoured: a 400 that names it. */
export class CreateFieldError extends SpecError {
  override name = 'CreateFieldError';
}

/** Resource limits of a shared kernel's cgroups; a VM is bounded by its own memory and vCPUs instead. */
const IGNORED_LIMITS = [
  'CpuShares',
  'CpuQuota',
  'CpuPeriod',
  'CpusetCpus',
  'CpusetMems',
  'BlkioWeight',
  'MemorySwap',
  'MemoryReservation',
  'OomKillDisable',
] as const;

/** The networks every Docker daemon has; all of them mean the job's own network here. */
export const DEFAULT_NETWORKS = new Set(['', 'default', 'bridge']);

const NS_PER_MS = 1_000_000;
/** A bind of a Docker API socket (the runner's /var/run/docker.sock). */
const DOCKER_SOCKET = /(^|\/)docker\.sock$/;
const MIB = 1024 * 1024;

/** A field that would let the container past its VM, or reach the host's devices: refused, never ignored. */
const REFUSED: readonly { field: string; set: (body: CreateBody) => boolean; why: string }[] = [
  {
    field: 'HostConfig.Devices',
    set: (b) => nonEmpty(b.HostConfig?.Devices),
    why: 'host devices cannot be passed into a microVM',
  },
  {
    field: 'HostConfig.DeviceRequests',
    set: (b) => nonEmpty(b.HostConfig?.DeviceRequests),
    why: 'host devices (GPUs) cannot be passed into a microVM',
  },
  {
    field: 'HostConfig.PidMode',
    set: (b) => isSet(b.HostConfig?.PidMode),
    why: 'a container cannot share another PID namespace: it has a kernel of its own',
  },
  {
    field: 'HostConfig.IpcMode',
    set: (b) => !['', 'private', 'none', 'shareable', undefined].includes(b.HostConfig?.IpcMode),
    why: 'a container cannot share another IPC namespace: it has a kernel of its own',
  },
  {
    field: 'HostConfig.UTSMode',
    set: (b) => isSet(b.HostConfig?.UTSMode),
    why: "a container cannot share the host's hostname namespace",
  },
  {
    field: 'HostConfig.UsernsMode',
    set: (b) => isSet(b.HostConfig?.UsernsMode),
    why: "a container cannot share the host's user namespace",
  },
  {
    field: 'HostConfig.CgroupParent',
    set: (b) => isSet(b.HostConfig?.CgroupParent),
    why: "a VM is not placed in a host cgroup of the caller's choice",
  },
  {
    field: 'HostConfig.SecurityOpt',
    set: (b) => nonEmpty(b.HostConfig?.SecurityOpt),
    why: 'security options apply to a shared kernel; each container here has its own',
  },
  {
    field: 'HostConfig.VolumesFrom',
    set: (b) => nonEmpty(b.HostConfig?.VolumesFrom),
    why: 'volumes cannot be taken from another container; name a volume instead',
  },
  {
    field: 'HostConfig.Links',
    set: (b) => nonEmpty(b.HostConfig?.Links),
    why: 'legacy links are not supported; put both containers on one network and use its aliases',
  },
  {
    field: 'Tty',
    set: (b) => b.Tty === true,
    why: 'a terminal (docker run -t) is not supported; the output comes as stdout and stderr',
  },
  {
    field: 'OpenStdin',
    set: (b) => b.OpenStdin === true,
    why: "the container's command cannot be given stdin (docker run -i); use exec -i",
  },
];

/**
 * Reads a ContainerCreate body into the one ContainerSpec every door makes;
 * `name` is the query's (or a generated one). A field that cannot be honoured
 * is refused with its name, one that would weaken isolation always. Pure.
 */
export function containerFromCreateBody(body: CreateBody, name: string, baseDir: string): CreateRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new CreateFieldError('the request body must be a JSON object');
  for (const refused of REFUSED)
    if (refused.set(body)) throw new CreateFieldError(`${refused.field}: ${refused.why}`);
  const host = body.HostConfig ?? {};
  const image = stringField(body.Image, 'Image');
  if (!image) throw new CreateFieldError('Image: an image is required');
  validateName(name);
  const warnings: string[] = [];

  const network = networkOf(body);
  const restart = restartPolicy(host.RestartPolicy);
  if (host.PublishAllPorts === true)
    throw new CreateFieldError(
      'HostConfig.PublishAllPorts: publish each port with PortBindings (-p) instead',
    );
  for (const field of ['Dns', 'DnsSearch', 'DnsOptions'] as const)
    if (nonEmpty(host[field]))
      warnings.push(`HostConfig.${field} is ignored: the job network's resolver is used`);
  const guest = guestSettings(body);
  for (const field of IGNORED_LIMITS) {
    const value = (host as Record<string, unknown>)[field];
    const unset = value === undefined || value === null || value === 0 || value === '' || value === false;
    if (!unset && !(Array.isArray(value) && value.length === 0))
      warnings.push(
        `HostConfig.${field} is ignored: a VM is limited by its memory and CPUs (Memory, NanoCpus)`,
      );
  }

  const binds = [
    ...stringList(host.Binds, 'HostConfig.Binds').map(bindEntry),
    ...(host.Mounts ?? []).flatMap((mount, index) => mountEntry(mount, index)),
  ];
  // The Docker socket bound in (the runner's job container, Testcontainers' Ryuk) is this daemon's own API, served inside the VM.
  const isSocket = (entry: string): boolean => DOCKER_SOCKET.test(entry.split(':')[0] ?? '');
  const apiSockets = binds.filter(isSocket).map(apiSocketTarget);
  const volumes = [...binds.filter((entry) => !isSocket(entry)), ...Object.keys(body.Volumes ?? {})];
  const tmpfs = [
    ...Object.entries(host.Tmpfs ?? {}).map(([target, options]) =>
      options ? `${target}:${options}` : target,
    ),
    ...(host.Mounts ?? []).flatMap((m) => (m.Type === 'tmpfs' ? [m.Target] : [])),
  ];
  const aliases = Object.values(body.NetworkingConfig?.EndpointsConfig ?? {}).flatMap((endpoint) =>
    stringList(endpoint?.Aliases, 'NetworkingConfig.EndpointsConfig.Aliases'),
  );
  const spec: ContainerSpec = {
    name,
    image,
    env: stringList(body.Env, 'Env'),
    ports: portBindings(host.PortBindings),
    volumes,
    tmpfs,
    baseDir,
    dependsOn: [],
    aliases: [...new Set(aliases.filter((alias) => alias !== name))],
    expose: exposedPorts(body.ExposedPorts),
    labels: labels(body.Labels),
    createBindSources: true,
    ...optional('command', commandField(body.Cmd, 'Cmd')),
    ...optional('entrypoint', commandField(body.Entrypoint, 'Entrypoint', true)),
    ...optional('workdir', stringField(body.WorkingDir, 'WorkingDir') || undefined),
    ...optional('user', stringField(body.User, 'User') || undefined),
    ...optional('healthcheck', healthField(body.Healthcheck)),
    ...optional('memoryMiB', memoryField(host.Memory)),
    ...optional('cpus', cpusField(host.NanoCpus)),
    ...optional('extraHosts', extraHosts(host.ExtraHosts)),
    ...optional('stopSignal', stringField(body.StopSignal, 'StopSignal') || undefined),
    ...optional('apiSockets', apiSockets.length > 0 ? [...new Set(apiSockets)] : undefined),
    ...optional('guest', restart || guest ? { ...guest, ...(restart ? { restart } : {}) } : undefined),
    ...optional('hostname', hostnameField(body.Hostname)),
    ...optional('stopGraceMs', stopTimeout(body.StopTimeout)),
  };
  return { spec, autoRemove: host.AutoRemove === true, network, warnings };
}

/**
 * What the guest sets up around the service (docker run --sysctl, --ulimit,
 * --shm-size, --read-only, --cap-add, --cap-drop, --privileged, --domainname):
 * in the container's own kernel, so none of it reaches the host. Pure.
 */
function guestSettings(body: CreateBody): GuestSettings | undefined {
  const host = body.HostConfig ?? {};
  const sysctls = Object.entries(host.Sysctls ?? {});
  for (const [key, value] of sysctls)
    if (!isSysctlName(key) || typeof value !== 'string' || /[\n\0]/.test(value))
      throw new CreateFieldError(`HostConfig.Sysctls: "${key}" is not a sysctl name with a one-line value`);
  const ulimits = (host.Ulimits ?? []).map((limit) => {
    const name = String(limit.Name ?? '');
    if (!ULIMITS.includes(name))
      throw new CreateFieldError(
        `HostConfig.Ulimits: "${name}" is not a ulimit; use one of ${ULIMITS.join(', ')}`,
      );
    const soft = limit.Soft ?? -1;
    const hard = limit.Hard ?? -1;
    if (!Number.isInteger(soft) || !Number.isInteger(hard) || soft < -1 || hard < -1)
      throw new CreateFieldError(`HostConfig.Ulimits: ${name} needs whole numbers (-1 for unlimited)`);
    return [name, { soft, hard }] as const;
  });
  const capAdd = capabilityNames(host.CapAdd, 'HostConfig.CapAdd');
  const capDrop = capabilityNames(host.CapDrop, 'HostConfig.CapDrop');
  const groupAdd = stringList(host.GroupAdd, 'HostConfig.GroupAdd');
  const badGroup = groupAdd.find((group) => !isGroupName(group));
  if (badGroup !== undefined)
    throw new CreateFieldError(`HostConfig.GroupAdd: "${badGroup}" is not a group name or number`);
  const shm = host.ShmSize;
  if (shm !== undefined && (!Number.isInteger(shm) || shm < 0))
    throw new CreateFieldError('HostConfig.ShmSize: must be a whole number of bytes');
  const settings: GuestSettings = {
    ...optional('domainname', stringField(body.Domainname, 'Domainname') || undefined),
    ...optional('sysctls', sysctls.length > 0 ? Object.fromEntries(sysctls) : undefined),
    ...optional('ulimits', ulimits.length > 0 ? Object.fromEntries(ulimits) : undefined),
    ...optional('shmMiB', shm ? Math.max(1, Math.ceil(shm / MIB)) : undefined),
    ...optional('readOnly', host.ReadonlyRootfs === true ? true : undefined),
    ...optional('capAdd', capAdd.length > 0 ? capAdd : undefined),
    ...optional('capDrop', capDrop.length > 0 ? capDrop : undefined),
    ...optional('privileged', host.Privileged === true ? true : undefined),
    ...optional('groupAdd', groupAdd.length > 0 ? groupAdd : undefined),
    ...optional('pidsLimit', pidsLimit(host.PidsLimit)),
  };
  try {
    serviceCapabilities(settings);
  } catch (error: unknown) {
    throw new CreateFieldError(`HostConfig.CapAdd/CapDrop: ${(error as Error).message}`);
  }
  return Object.keys(settings).length > 0 ? settings : undefined;
}

/** HostConfig.PidsLimit (docker run --pids-limit): 0, -1 and null are no limit. */
function pidsLimit(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < -1)
    throw new CreateFieldError('HostConfig.PidsLimit: must be a whole number (-1 or 0 for no limit)');
  return value > 0 ? value : undefined;
}

/** CapAdd and CapDrop as Docker takes them: NET_ADMIN or CAP_NET_ADMIN, any case, or ALL. */
function capabilityNames(value: unknown, field: string): string[] {
  return stringList(value, field).map(capabilityName);
}

/** Hostname (docker run -h); else the container's name is its hostname. */
function hostnameField(value: unknown): string | undefined {
  const name = stringField(value, 'Hostname');
  if (!name) return undefined;
  if (!isHostname(name))
    throw new CreateFieldError(
      `Hostname: "${name}" is not a host name (labels of letters, digits and "-", at most 63 in all)`,
    );
  return name;
}

/** StopTimeout (docker run --stop-timeout), in seconds; the time a stop waits unless the stop gives its own. */
function stopTimeout(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
    throw new CreateFieldError('StopTimeout: must be a whole number of seconds');
  return value * 1000;
}

/** HostConfig.RestartPolicy: carried out by the guest init (--restart always, on-failure:N, unless-stopped). */
function restartPolicy(
  policy: { Name?: string; MaximumRetryCount?: number } | undefined,
): { policy: RestartPolicy; maxRetries?: number } | undefined {
  const name = policy?.Name ?? '';
  if (name === '' || name === 'no') return undefined;
  if (!(RESTART_POLICIES as readonly string[]).includes(name))
    throw new CreateFieldError(
      `HostConfig.RestartPolicy: "${name}" is not no, always, on-failure or unless-stopped`,
    );
  const retries = policy?.MaximumRetryCount ?? 0;
  if (!Number.isInteger(retries) || retries < 0)
    throw new CreateFieldError('HostConfig.RestartPolicy.MaximumRetryCount: must be a whole number');
  return name === 'on-failure' && retries > 0
    ? { policy: name, maxRetries: retries }
    : { policy: name as RestartPolicy };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [key in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [key in K]?: V };
}

function nonEmpty(value: unknown): boolean {
  return Array.isArray(value) && value.length > 0;
}

function isSet(value: unknown): boolean {
  return typeof value === 'string' && value !== '' && value !== 'private';
}

function stringField(value: unknown, field: string): string {
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw new CreateFieldError(`${field}: must be a string`);
  return value;
}

function stringList(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((entry) => typeof entry !== 'string'))
    throw new CreateFieldError(`${field}: must be a list of strings`);
  return value as string[];
}

/** Cmd/Entrypoint: a list, or (as older clients send) one string; for Entrypoint, [] or [""] clears the image's. */
function commandField(value: unknown, field: string, clears = false): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  const list = typeof value === 'string' ? [value] : stringList(value, field);
  if (clears && (list.length === 0 || (list.length === 1 && list[0] === ''))) return [];
  return list.length === 0 ? undefined : list;
}

function labels(value: unknown): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (
    typeof value !== 'object' ||
    Array.isArray(value) ||
    Object.values(value).some((v) => typeof v !== 'string')
  )
    throw new CreateFieldError('Labels: must be an object of strings');
  return { ...(value as Record<string, string>) };
}

/** The one network a create names; more than one is refused. */
function networkOf(body: CreateBody): string | undefined {
  const mode = stringField(body.HostConfig?.NetworkMode, 'HostConfig.NetworkMode');
  if (mode === 'host')
    throw new CreateFieldError(
      'HostConfig.NetworkMode: "host" would put the container on the host\'s network; each container here is a VM on the job network',
    );
  if (mode === 'none' || mode.startsWith('container:'))
    throw new CreateFieldError(
      `HostConfig.NetworkMode: "${mode}" is not supported; use the default network or a network made with "docker network create"`,
    );
  const endpoints = Object.keys(body.NetworkingConfig?.EndpointsConfig ?? {});
  if (endpoints.length > 1)
    throw new CreateFieldError(
      'NetworkingConfig.EndpointsConfig: a container is created on one network; connect it to others afterwards',
    );
  const named = mode || endpoints[0] || '';
  return DEFAULT_NETWORKS.has(named) ? undefined : named;
}

/** Binds entries `SRC:DST[:OPTS]`; of the options only ro and rw mean anything for a VM's disk. */
function bindEntry(text: string): string {
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3)
    throw new CreateFieldError(`HostConfig.Binds: "${text}" is not SOURCE:TARGET[:OPTIONS]`);
  const [source = '', target = '', options = ''] = parts;
  const readOnly = options.split(',').includes('ro');
  return `${source}:${target}${readOnly ? ':ro' : ''}`;
}

/** Longest socket path the guest can serve (sun_path holds 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

/** Where a Docker socket bind puts the socket in the container. */
function apiSocketTarget(entry: string): string {
  const target = entry.split(':')[1] ?? '';
  if (!target.startsWith('/') || /\s/.test(target) || target.split('/').includes('..'))
    throw new CreateFieldError(
      `HostConfig.Binds: "${entry}": the Docker socket's path in the container must be absolute, without whitespace or ".."`,
    );
  if (Buffer.byteLength(target) > MAX_SOCKET_PATH)
    throw new CreateFieldError(
      `HostConfig.Binds: "${entry}": a socket path in the container is at most ${MAX_SOCKET_PATH} bytes`,
    );
  return target;
}

function mountEntry(mount: Docker.MountSettings, index: number): string[] {
  const where = `HostConfig.Mounts[${index}]`;
  const ro = mount.ReadOnly ? ':ro' : '';
  switch (mount.Type) {
    case 'bind':
      if (!mount.Target) throw new CreateFieldError(`${where}.Target: give the path in the container`);
      if (!mount.Source?.startsWith('/'))
        throw new CreateFieldError(`${where}.Source: a bind mount needs an absolute host path`);
      return [`${mount.Source}:${mount.Target}${ro}`];
    case 'volume':
      if (mount.Source && !isVolumeName(mount.Source))
        throw new CreateFieldError(
          `${where}.Source: "${mount.Source}" is not a volume name; use a bind mount for a host path`,
        );
      return [mount.Source ? `${mount.Source}:${mount.Target}${ro}` : `${mount.Target}${ro}`];
    case 'tmpfs':
      return [];
    default:
      throw new CreateFieldError(
        `${where}.Type: "${String(mount.Type)}" is not supported; use bind, volume or tmpfs`,
      );
  }
}

/**
 * PortBindings: {"80/tcp": [{HostIp, HostPort}]}; an empty or "0" HostPort
 * picks a free one. An empty HostIp means loopback, as `hyper run -p` does:
 * publishing beyond this host is asked for with "0.0.0.0".
 */
function portBindings(value: Docker.PortMap | undefined): PortSpec[] {
  const specs: PortSpec[] = [];
  for (const [key, bindings] of Object.entries(value ?? {})) {
    for (const binding of bindings ?? []) {
      const host = binding?.HostPort ?? '';
      const ip = binding?.HostIp ?? '';
      const address = ip.includes(':') ? `[${ip}]:` : ip ? `${ip}:` : '';
      const text = `${address}${host === '0' ? '' : host}${address || (host && host !== '0') ? ':' : ''}${key}`;
      try {
        specs.push(parsePortSpec(text));
      } catch (error: unknown) {
        if (error instanceof PortSpecError)
          throw new CreateFieldError(`HostConfig.PortBindings: ${error.message}`);
        throw error;
      }
    }
  }
  return specs;
}

/** ExposedPorts: {"5432/tcp": {}}; the TCP ones are what other containers may reach. */
function exposedPorts(value: Record<string, unknown> | undefined): number[] {
  return Object.keys(value ?? {}).flatMap((key) => {
    const match = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/.exec(key);
    const port = Number(match?.[1]);
    if (!match || port < 1 || port > 65535)
      throw new CreateFieldError(`ExposedPorts: "${key}" is not PORT/PROTOCOL with a port from 1 to 65535`);
    return (match[2] ?? 'tcp') === 'tcp' ? [port] : [];
  });
}

/** Docker's Healthcheck (nanoseconds); Test ["NONE"] turns the image's off. */
function healthField(value: Docker.HealthConfig | undefined): HealthcheckSpec | 'none' | undefined {
  if (!value) return undefined;
  if (value.Test === undefined || value.Test === null || value.Test.length === 0) {
    const timing = [value.Interval, value.Timeout, value.StartPeriod, value.Retries].some((v) => v);
    if (timing) throw new CreateFieldError(`Healthcheck: ${PARTIAL_HEALTHCHECK}`);
    return undefined;
  }
  if (value.Retries !== undefined && (!Number.isInteger(value.Retries) || value.Retries < 0))
    throw new CreateFieldError('Healthcheck.Retries: must be a whole number, 0 or more');
  const test = stringList(value.Test, 'Healthcheck.Test');
  if (test[0] === 'NONE') return 'none';
  if (test[0] !== 'CMD' && test[0] !== 'CMD-SHELL')
    throw new CreateFieldError('Healthcheck.Test: must start with "CMD", "CMD-SHELL" or "NONE"');
  const ms = (ns: number | undefined, field: string): number => {
    if (ns !== undefined && (!Number.isFinite(ns) || ns < 0))
      throw new CreateFieldError(`Healthcheck.${field}: must be a duration in nanoseconds`);
    return Math.round((ns ?? 0) / NS_PER_MS);
  };
  return healthcheck(test, {
    intervalMs: ms(value.Interval, 'Interval'),
    timeoutMs: ms(value.Timeout, 'Timeout'),
    startPeriodMs: ms(value.StartPeriod, 'StartPeriod'),
    retries: value.Retries ?? 0,
  });
}

/** Memory in bytes, rounded up to whole MiB; 0 means the default. */
function memoryField(bytes: number | undefined): number | undefined {
  if (bytes === undefined || bytes === 0) return undefined;
  if (!Number.isInteger(bytes) || bytes < 0)
    throw new CreateFieldError('HostConfig.Memory: must be a number of bytes');
  const mib = Math.ceil(bytes / MIB);
  if (mib < 64)
    throw new CreateFieldError(`HostConfig.Memory: ${mib} MiB is too small for a VM; give at least 64 MiB`);
  return mib;
}

/** NanoCpus rounded up to whole vCPUs; 0 means the default. */
function cpusField(nano: number | undefined): number | undefined {
  if (nano === undefined || nano === 0) return undefined;
  if (!Number.isInteger(nano) || nano < 0)
    throw new CreateFieldError('HostConfig.NanoCpus: must be a whole number');
  return Math.max(CONTAINER_DEFAULTS.cpus, Math.ceil(nano / 1e9));
}

/** ExtraHosts: "name:ip" (also "name=ip"), as `--add-host`. */
function extraHosts(value: unknown): { host: string; ip: string }[] | undefined {
  const entries = stringList(value, 'HostConfig.ExtraHosts');
  if (entries.length === 0) return undefined;
  return entries.map((entry) => {
    const parsed = parseHostEntry(entry);
    if (typeof parsed === 'string') throw new CreateFieldError(`HostConfig.ExtraHosts: ${parsed}`);
    return parsed;
  });
}
