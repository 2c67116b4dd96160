import net from 'node:net';
import { type ErrorKind, HyperError } from '../errors.js';
import { CidrError, parseCidr, formatCidr } from './cidr.js';

/** How a job's VMs are networked: `bridge` (root or sudo) or `user` (rootless); `auto` picks. */
export type NetworkMode = 'auto' | 'bridge' | 'user';
export type EgressPolicy = 'allow' | 'deny';

/** What the user asked for; validated, nothing resolved yet. */
export interface NetworkSettings {
  mode: NetworkMode;
  egress: EgressPolicy;
  /** With `egress: deny`: the hosts (names) and networks (CIDRs) guests may still reach. */
  allow: string[];
  /** The bridge network's subnet; picked from 10.213.0.0/16 when absent. */
  subnet?: string | undefined;
  /** The packet filter a bridge network must use (HYPER_FIREWALL: nft or iptables); chosen when absent. */
  firewall?: string | undefined;
}

export const DEFAULT_NETWORK: NetworkSettings = { mode: 'auto', egress: 'allow', allow: [] };

/** Mostly bad network settings; clashes on the host and missing privileges say their kind where thrown. */
export class NetworkError extends HyperError {
  static override defaultKind: ErrorKind = 'Invalid';
  override name = 'NetworkError';
}

const HOSTNAME =
  /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

function oneOf<T extends string>(value: string, allowed: readonly T[], what: string): T {
  const text = value.trim().toLowerCase();
  if (!(allowed as readonly string[]).includes(text))
    throw new NetworkError(
      `${what} must be ${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}, not "${value}"`,
    );
  return text as T;
}

/**
 * Checks network settings from any front door; `names` says what the user
 * called each one (`--network`, the `network` input), for the messages. Pure.
 */
export function networkSettings(
  given: {
    mode?: string | undefined;
    egress?: string | undefined;
    allow?: readonly string[];
    subnet?: string | undefined;
  },
  names: { mode: string; egress: string; allow: string; subnet: string },
): NetworkSettings {
  const mode = given.mode ? oneOf(given.mode, ['auto', 'bridge', 'user'], names.mode) : 'auto';
  const egress = given.egress ? oneOf(given.egress, ['allow', 'deny'], names.egress) : 'allow';
  const allow = (given.allow ?? []).map((entry) => entry.trim()).filter(Boolean);
  for (const entry of allow) checkAllowEntry(entry, names.allow);
  if (allow.length > 0 && egress === 'allow') {
    throw new NetworkError(
      `${names.allow} lists what guests may reach when ${names.egress} is deny; with ${names.egress} allow they reach everything already`,
    );
  }
  let subnet: string | undefined;
  if (given.subnet) {
    try {
      const cidr = parseCidr(given.subnet);
      if (cidr.prefix > 29 || cidr.prefix < 16)
        throw new NetworkError(`${names.subnet} ${given.subnet}: use a prefix from /16 to /29`);
      subnet = formatCidr(cidr);
    } catch (error: unknown) {
      if (error instanceof CidrError)
        throw new NetworkError(`${names.subnet}: ${error.message}`, { cause: error });
      throw error;
    }
  }
  return { mode, egress, allow, ...(subnet ? { subnet } : {}) };
}

function checkAllowEntry(entry: string, what: string): void {
  if (/^[\d./]+$/.test(entry)) {
    try {
      parseCidr(entry);
    } catch (error: unknown) {
      throw new NetworkError(`${what}: ${(error as Error).message}`, { cause: error });
    }
    return;
  }
  if (net.isIPv6(entry) || entry.includes(':'))
    throw new NetworkError(`${what}: "${entry}": only IPv4 addresses and networks are supported`);
  if (!HOSTNAME.test(entry))
    throw new NetworkError(`${what}: "${entry}" is neither a host name nor an IPv4 address or CIDR`);
}

/** Splits a comma- or newline-separated list, as Actions inputs and CLI flags give it. Pure. */
export function splitList(text: string | undefined): string[] {
  return (text ?? '')
    .split(/[,\n]/)
    .map((item) => item.trim())
    .filter(Boolean);
}
