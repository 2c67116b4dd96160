import { type ErrorKind, HyperError } from '../errors.js';
import type { ImageRunConfig } from '../images/run-config.js';
import { ustar } from './ustar.js';

/**
 * Docker's per-container kernel settings, with their VM meaning: each is
 * set in the service's own guest kernel, so none reaches the host.
 */
export interface GuestSettings {
  /** The guest kernel's NIS domain name. */
  domainname?: string;
  /** Written to /proc/sys before the service starts; any the guest kernel has. */
  sysctls?: Record<string, string>;
  /** Resource limits for the service (`nofile`, `nproc`, ...): soft and hard; -1 is unlimited. */
  ulimits?: Record<string, { soft: number; hard: number }>;
  /** The size of the container's /dev/shm, in MiB (Docker's default is 64). */
  shmMiB?: number;
  /** The container's root filesystem is mounted read-only; volumes and tmpfs mounts stay writable. */
  readOnly?: boolean;
  /**
   * Docker's restart policy, carried out by the guest init: the service is
   * started again in its VM after it exits, with Docker's back-off. `no`
   * when absent. `maxRetries` bounds on-failure (0: no bound).
   */
  restart?: { policy: RestartPolicy; maxRetries?: number };
  /** Capabilities on top of Docker's default set (names without CAP_, or ALL). */
  capAdd?: string[];
  /** Capabilities taken from the set (names without CAP_, or ALL). */
  capDrop?: string[];
  /** Every capability, as docker run --privileged gives (inside this VM only). */
  privileged?: boolean;
  /** The most processes (tasks) the service and its execs may have at once (compose pids_limit, --pids-limit). */
  pidsLimit?: number;
  /** Supplementary groups beyond the user's own (compose group_add, --group-add): names in the image's /etc/group, or numbers. */
  groupAdd?: string[];
}

/** A group as group_add and --group-add take it: a name as /etc/group has it, or a number. Pure. */
export function isGroupName(group: string): boolean {
  return /^[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31}$/.test(group);
}

/** The limits hyper-exec sets, by the names `ulimit`, Docker's --ulimit and compose use. */
export const ULIMITS = [
  'core',
  'cpu',
  'data',
  'fsize',
  'locks',
  'memlock',
  'msgqueue',
  'nice',
  'nofile',
  'nproc',
  'rss',
  'rtprio',
  'rttime',
  'sigpending',
  'stack',
  'as',
];

/** A sysctl's name as Docker and compose take it: dotted, such as net.core.somaxconn. Pure. */
export function isSysctlName(name: string): boolean {
  return /^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+$/.test(name);
}

/** A capability as Docker takes it (NET_ADMIN, CAP_NET_ADMIN, net_admin, ALL) -> NET_ADMIN. Pure. */
export function capabilityName(text: string): string {
  return text.toUpperCase().replace(/^CAP_/, '');
}

/** Linux capability numbers by name (linux/capability.h), as Docker names them. */
export const CAPABILITIES: Readonly<Record<string, number>> = {
  CHOWN: 0,
  DAC_OVERRIDE: 1,
  DAC_READ_SEARCH: 2,
  FOWNER: 3,
  FSETID: 4,
  KILL: 5,
  SETGID: 6,
  SETUID: 7,
  SETPCAP: 8,
  LINUX_IMMUTABLE: 9,
  NET_BIND_SERVICE: 10,
  NET_BROADCAST: 11,
  NET_ADMIN: 12,
  NET_RAW: 13,
  IPC_LOCK: 14,
  IPC_OWNER: 15,
  SYS_MODULE: 16,
  SYS_RAWIO: 17,
  SYS_CHROOT: 18,
  SYS_PTRACE: 19,
  SYS_PACCT: 20,
  SYS_ADMIN: 21,
  SYS_BOOT: 22,
  SYS_NICE: 23,
  SYS_RESOURCE: 24,
  SYS_TIME: 25,
  SYS_TTY_CONFIG: 26,
  MKNOD: 27,
  LEASE: 28,
  AUDIT_WRITE: 29,
  AUDIT_CONTROL: 30,
  SETFCAP: 31,
  MAC_OVERRIDE: 32,
  MAC_ADMIN: 33,
  SYSLOG: 34,
  WAKE_ALARM: 35,
  BLOCK_SUSPEND: 36,
  AUDIT_READ: 37,
  PERFMON: 38,
  BPF: 39,
  CHECKPOINT_RESTORE: 40,
};

/** The capabilities Docker gives a container unless told otherwise (moby's default set). */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CHOWN',
  'DAC_OVERRIDE',
  'FSETID',
  'FOWNER',
  'MKNOD',
  'NET_RAW',
  'SETGID',
  'SETUID',
  'SETFCAP',
  'SETPCAP',
  'NET_BIND_SERVICE',
  'SYS_CHROOT',
  'KILL',
  'AUDIT_WRITE',
];

/**
 * The service's capabilities, as Docker computes them: every one when
 * privileged; else the default set, with cap_drop taken out and cap_add put
 * in (ALL in either means every one). Names are checked. Pure.
 */
export function serviceCapabilities(
  settings: Pick<GuestSettings, 'capAdd' | 'capDrop' | 'privileged'>,
): string[] {
  const all = Object.keys(CAPABILITIES);
  for (const name of [...(settings.capAdd ?? []), ...(settings.capDrop ?? [])])
    if (name !== 'ALL' && !(name in CAPABILITIES))
      throw new GuestConfigError(`"${name}" is not a capability; use one of ${all.join(', ')}, or ALL`);
  if (settings.privileged) return all;
  const drop = settings.capDrop ?? [];
  const add = settings.capAdd ?? [];
  const kept = drop.includes('ALL') ? [] : DEFAULT_CAPABILITIES.filter((name) => !drop.includes(name));
  const added = add.includes('ALL') ? all : add;
  return all.filter((name) => kept.includes(name) || added.includes(name));
}

export type RestartPolicy = 'no' | 'always' | 'on-failure' | 'unless-stopped';
export const RESTART_POLICIES: readonly RestartPolicy[] = ['no', 'always', 'on-failure', 'unless-stopped'];

/** A file put into the container: its path, content, owner and mode. */
export interface ServiceFile {
  target: string;
  content: Buffer;
  uid: number;
  gid: number;
  mode: number;
}

/**
 * What the guest init (guest/init) needs to run one service. It reaches the
 * guest as fw_cfg files under opt/hyper/; this module is the host side of that
 * contract.
 */
export interface GuestConfig {
  hostname: string;
  argv: string[];
  env: string[];
  user: string;
  workdir: string;
  stopSignal: string;
  network: GuestNetwork;
  /** The mount table (src/storage/mounts.ts guestMountTable); empty for none. */
  mounts?: string;
  /** Kernel settings, limits, /dev/shm and a read-only root (compose sysctls, ulimits, shm_size, read_only). */
  settings?: GuestSettings;
  /** Files put into the container before the service starts (compose secrets and configs). */
  files?: ServiceFile[];
}

/** What the guest init configures: its address, and the hosts and resolv.conf it binds into the container. */
export interface GuestNetwork {
  /**
   * The NIC's address, set by the init: a clone of a boot template starts
   * with the template's. Absent in user networking, which keeps QEMU's default.
   */
  mac?: string | undefined;
  ip: string;
  prefix: number;
  gateway: string;
  hosts: string;
  resolvConf: string;
}

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const CONTAINER_ROOT = '/container';
const EXEC_HELPER = '/bin/hyper-exec';
const ENV_FILE = '/run/hyper/env';
/** The service's ulimits, written by guest/init: what every process in its container gets. */
const LIMITS_FILE = '/run/hyper/limits';
/** The numbers of the capabilities the service keeps, written by guest/init. */
const CAPS_FILE = '/run/hyper/caps';
/** The supplementary groups the service and every exec get (group_add), written by guest/init. */
const GROUPS_FILE = '/run/hyper/groups';
/** The service's pids cgroup, made by guest/init when it has a pids limit. */
const SERVICE_CGROUP = '/sys/fs/cgroup/service';

export class GuestConfigError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'GuestConfigError';
}

/** Docker's rule: an --entrypoint drops the image's Cmd; arguments replace Cmd. Pure. */
export function serviceArgv(
  image: ImageRunConfig,
  overrides: { entrypoint?: string[] | undefined; command?: string[] | undefined },
  imageName: string,
): string[] {
  const entrypoint = overrides.entrypoint ?? image.entrypoint;
  const command = overrides.command?.length ? overrides.command : overrides.entrypoint ? [] : image.cmd;
  const argv = [...entrypoint, ...command];
  if (argv.length === 0) {
    throw new GuestConfigError(
      `image ${imageName} has neither Entrypoint nor Cmd, and no command was given: pass one after the image name or use --entrypoint`,
    );
  }
  return argv;
}

/** Image Env, then the user's (which wins), with PATH and HOSTNAME as Docker sets them. Pure. */
export function mergeEnv(
  imageEnv: readonly string[],
  userEnv: readonly string[],
  hostname: string,
): string[] {
  const merged = new Map<string, string>();
  merged.set('PATH', DEFAULT_PATH.slice('PATH='.length));
  merged.set('HOSTNAME', hostname);
  for (const entry of [...imageEnv, ...userEnv]) {
    const eq = entry.indexOf('=');
    if (eq <= 0) continue;
    merged.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return [...merged].map(([key, value]) => `${key}=${value}`);
}

/** `SIGTERM`, `TERM`, `15` -> the name or number busybox `kill -s` takes. */
export function normalizeSignal(signal: string): string {
  const text = signal.trim().toUpperCase();
  if (/^\d+$/.test(text)) return text;
  const name = text.startsWith('SIG') ? text.slice(3) : text;
  if (!/^[A-Z0-9+]+$/.test(name)) throw new GuestConfigError(`"${signal}" is not a signal name`);
  return name;
}

function singleLine(what: string, value: string): string {
  if (/[\n\r\0]/.test(value))
    throw new GuestConfigError(`${what} must be a single line: ${JSON.stringify(value)}`);
  return value;
}

function nulList(items: readonly string[]): Buffer {
  for (const item of items) {
    if (item.includes('\0')) throw new GuestConfigError(`NUL byte in ${JSON.stringify(item)}`);
  }
  return Buffer.from(items.map((item) => `${item}\0`).join(''));
}

/** The fw_cfg files for one guest: name (under opt/hyper/) and content. Pure. */
export function guestFiles(config: GuestConfig): { name: string; content: Buffer }[] {
  const settings = [
    `hostname=${singleLine('hostname', config.hostname)}`,
    ...(config.network.mac ? [`mac=${config.network.mac}`] : []),
    `ip=${config.network.ip}`,
    `prefix=${config.network.prefix}`,
    `gateway=${config.network.gateway}`,
    `user=${singleLine('user', config.user)}`,
    `workdir=${singleLine('working directory', config.workdir)}`,
    `stopsignal=${normalizeSignal(config.stopSignal)}`,
    'rootdev=rootfs',
    ...settingsLines(config.settings ?? {}),
  ];
  return [
    { name: 'settings', content: Buffer.from(`${settings.join('\n')}\n`) },
    { name: 'argv', content: nulList(config.argv) },
    { name: 'env', content: nulList(config.env) },
    { name: 'hosts', content: Buffer.from(config.network.hosts) },
    { name: 'resolv.conf', content: Buffer.from(config.network.resolvConf) },
    ...(config.mounts ? [{ name: 'mounts', content: Buffer.from(config.mounts) }] : []),
    ...(config.files?.length ? [{ name: 'files', content: filesArchive(config.files) }] : []),
  ];
}

/**
 * The settings lines guest/init reads for compose's sysctls, ulimits,
 * shm_size, read_only, domainname, group_add and restart: `sysctl=KEY=VALUE`,
 * `ulimit=NAME SOFT HARD` (-1 unlimited) and `group=GROUP` once each. Pure.
 */
function settingsLines(settings: GuestSettings): string[] {
  return [
    ...(settings.domainname ? [`domainname=${singleLine('domainname', settings.domainname)}`] : []),
    ...(settings.shmMiB ? [`shmsize=${settings.shmMiB}`] : []),
    ...(settings.readOnly ? ['readonly=1'] : []),
    ...(settings.pidsLimit ? [`pidslimit=${settings.pidsLimit}`] : []),
    ...(settings.restart && settings.restart.policy !== 'no'
      ? [`restart=${settings.restart.policy}`, `restartmax=${settings.restart.maxRetries ?? 0}`]
      : []),
    ...Object.entries(settings.sysctls ?? {}).map(
      ([key, value]) => `sysctl=${singleLine('sysctl name', key)}=${singleLine(`sysctl ${key}`, value)}`,
    ),
    `caps=${serviceCapabilities(settings)
      .map((name) => CAPABILITIES[name])
      .join(',')}`,
    ...Object.entries(settings.ulimits ?? {}).map(
      ([name, { soft, hard }]) => `ulimit=${name} ${soft} ${hard}`,
    ),
    ...(settings.groupAdd ?? []).map((group) => `group=${singleLine('group', group)}`),
  ];
}

/** The files as a tar at their paths under the container root, with their owners and modes. Pure. */
function filesArchive(files: readonly ServiceFile[]): Buffer {
  return ustar(
    files.map((file) => ({
      name: file.target.replace(/^\/+/, ''),
      content: file.content,
      mode: file.mode,
      uid: file.uid,
      gid: file.gid,
    })),
  );
}

/**
 * A guest's network files for a (new) job network: hosts, resolv.conf, and
 * the settings file with its address lines replaced. For an imported service,
 * whose files were made for the job it came from. Pure.
 */
export function rewriteNetworkFiles(
  settings: string,
  network: GuestNetwork,
): { name: string; content: Buffer }[] {
  const address: Record<string, string> = {
    ip: network.ip,
    prefix: String(network.prefix),
    gateway: network.gateway,
  };
  const lines = settings
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const key = line.slice(0, line.indexOf('='));
      return key in address ? `${key}=${address[key]}` : line;
    });
  return [
    { name: 'settings', content: Buffer.from(`${lines.join('\n')}\n`) },
    { name: 'hosts', content: Buffer.from(network.hosts) },
    { name: 'resolv.conf', content: Buffer.from(network.resolvConf) },
  ];
}

/** hyper-reseed setting the clock and reseeding the RNG from stdin (guest/hyper-reseed.c). */
function reseedCommand(clockNs: bigint): string {
  return `/bin/hyper-reseed --clock ${clockNs} - || exit $?`;
}

/** The host's time in nanoseconds since the epoch, for a resumed guest's clock. */
export function hostClockNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/**
 * What a guest resumed from saved state runs first, with 64 fresh random
 * bytes from the host on stdin: its clock set and its RNG reseeded
 * (guest/hyper-reseed.c), so two VMs resumed from one state do not share RNG
 * state, then, when given, this VM's network applied (networkSyncArgv). One
 * exec: each costs a guest fork and the agent's round trips. Pure.
 */
export function resumeSyncArgv(clockNs: bigint, network?: GuestNetwork): string[] {
  const reseed = reseedCommand(clockNs);
  if (!network) return ['/bin/sh', '-c', reseed];
  const [shell, flag, script, ...rest] = networkSyncArgv(network);
  return [shell as string, flag as string, `${reseed}; ${script as string}`, ...rest];
}

/**
 * The guest argv that re-applies the network files to a running guest (after
 * a checkpoint resumes in another job): eth0's address and route, and the
 * hosts and resolv.conf bound into the container. Pure.
 */
export function networkSyncArgv(network: GuestNetwork): string[] {
  const script = [
    'PATH=/bin:/sbin:/usr/bin:/usr/sbin',
    'printf %s "$1" > /run/hyper/hosts',
    'printf %s "$2" > /run/hyper/resolv.conf',
    // A VM resumed from another VM's saved state has that VM's MAC until told its own.
    ...(network.mac ? ['ip link set dev eth0 address "$5"'] : []),
    'ip addr flush dev eth0',
    'ip addr add "$3" dev eth0',
    'ip route replace default via "$4"',
  ].join(' && ');
  return [
    '/bin/sh',
    '-c',
    script,
    'sh',
    network.hosts,
    network.resolvConf,
    `${network.ip}/${network.prefix}`,
    network.gateway,
    ...(network.mac ? [network.mac] : []),
  ];
}

/** The guest argv that runs a command in the service's container, as `docker exec` would. Pure. */
export function execArgv(
  config: Pick<GuestConfig, 'user' | 'workdir'>,
  command: readonly string[],
  env: readonly string[] = [],
): string[] {
  return [
    EXEC_HELPER,
    '--root',
    CONTAINER_ROOT,
    '--user',
    config.user,
    '--workdir',
    config.workdir,
    '--env-file',
    ENV_FILE,
    '--limits-file',
    LIMITS_FILE,
    '--caps-file',
    CAPS_FILE,
    '--groups-file',
    GROUPS_FILE,
    '--cgroup',
    SERVICE_CGROUP,
    ...env.flatMap((entry) => ['--env', entry]),
    '--',
    ...command,
  ];
}
