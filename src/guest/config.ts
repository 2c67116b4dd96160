import type { ImageRunConfig } from '../images/run-config.js';

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
  network: { ip: string; prefix: number; gateway: string; dns: string };
  /** The mount table (src/storage/mounts.ts guestMountTable); empty for none. */
  mounts?: string;
}

/** User-mode networking (QEMU slirp) gives every guest this address plan. */
export const USER_NETWORK = { ip: '10.0.2.15', prefix: 24, gateway: '10.0.2.2', dns: '10.0.2.3' } as const;

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const CONTAINER_ROOT = '/container';
const EXEC_HELPER = '/bin/hyper-exec';
const ENV_FILE = '/run/hyper/env';

export class GuestConfigError extends Error {
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
    `ip=${config.network.ip}`,
    `prefix=${config.network.prefix}`,
    `gateway=${config.network.gateway}`,
    `user=${singleLine('user', config.user)}`,
    `workdir=${singleLine('working directory', config.workdir)}`,
    `stopsignal=${normalizeSignal(config.stopSignal)}`,
    'rootdev=rootfs',
  ];
  const hosts = [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    `${config.network.ip}\t${config.hostname}`,
  ];
  return [
    { name: 'settings', content: Buffer.from(`${settings.join('\n')}\n`) },
    { name: 'argv', content: nulList(config.argv) },
    { name: 'env', content: nulList(config.env) },
    { name: 'hosts', content: Buffer.from(`${hosts.join('\n')}\n`) },
    { name: 'resolv.conf', content: Buffer.from(`nameserver ${config.network.dns}\n`) },
    ...(config.mounts ? [{ name: 'mounts', content: Buffer.from(config.mounts) }] : []),
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
    ...env.flatMap((entry) => ['--env', entry]),
    '--',
    ...command,
  ];
}
