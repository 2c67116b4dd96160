import { formatCidr, overlaps, parseCidr, type Cidr } from './cidr.js';
import { NetworkError } from './settings.js';

/** Where a guest finds the other members of its job network. */
export interface Peer {
  address: string;
  /** The service name first, then its aliases. */
  names: string[];
}

const ALIAS = /^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,62})$/;

/**
 * Every name on the network is one service's: an alias may not repeat a
 * service name or another alias, on the same service or another. The
 * replicas of one group share its name and aliases. Pure.
 */
export function checkAliases(
  members: readonly { service: string; aliases: readonly string[]; group?: string | undefined }[],
): void {
  const owner = new Map<string, string>();
  for (const { service } of members) owner.set(service.toLowerCase(), service);
  const shared = new Map<string, string>();
  for (const { service, aliases, group } of members) {
    const own = new Set<string>();
    for (const alias of aliases) {
      if (!ALIAS.test(alias))
        throw new NetworkError(
          `service "${service}": alias "${alias}" is not a host name (letters, digits, "_", "." and "-")`,
        );
      const key = alias.toLowerCase();
      if (own.has(key)) throw new NetworkError(`service "${service}": alias "${alias}" is given twice`);
      own.add(key);
      if (group !== undefined && shared.get(key) === group) continue;
      const taken = owner.get(key);
      if (taken === undefined) {
        owner.set(key, `${service}\0alias`);
        if (group !== undefined) shared.set(key, group);
        continue;
      }
      const [other = '', kind] = taken.split('\0');
      if (kind === undefined)
        throw new NetworkError(
          other === service
            ? `service "${service}": alias "${alias}" is its own name`
            : `alias "${alias}" of service "${service}" is the name of service "${other}"; a name on the network belongs to one service`,
        );
      throw new NetworkError(
        `alias "${alias}" is given twice, by services "${other}" and "${service}"; a name on the network belongs to one service`,
      );
    }
  }
}

/** The guest's /etc/hosts: loopback, itself, then every other member by name and aliases. Pure. */
export function hostsFile(self: Peer, peers: readonly Peer[]): string {
  const lines = [
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    `${self.address}\t${self.names.join(' ')}`,
    ...peers.map((peer) => `${peer.address}\t${peer.names.join(' ')}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** The guest's resolv.conf: the given servers, or none (names then come from /etc/hosts only). Pure. */
export function resolvConf(servers: readonly string[]): string {
  if (servers.length === 0)
    return '# no name servers: egress is closed; services resolve through /etc/hosts\n';
  return servers.map((server) => `nameserver ${server}\n`).join('');
}

/** Bridge networks are /24s from here unless the user gives a subnet. */
export const SUBNET_POOL = parseCidr('10.213.0.0/16');

/** A host interface's address, or a route, as `ip` reports it. */
export interface HostNetwork {
  device: string;
  cidr: Cidr;
  text: string;
}

/** The first /24 of the pool, from `seed` on, that overlaps nothing on the host. Pure. */
export function chooseSubnet(taken: readonly HostNetwork[], seed: number): Cidr {
  const count = 2 ** (24 - SUBNET_POOL.prefix);
  for (let i = 0; i < count; i++) {
    const candidate = { base: SUBNET_POOL.base + ((seed + i) % count) * 256, prefix: 24 };
    if (!taken.some((t) => overlaps(t.cidr, candidate))) return candidate;
  }
  throw new NetworkError(
    `every /24 of ${formatCidr(SUBNET_POOL)} is in use on this host; give the network a subnet of its own`,
    { kind: 'Conflict' },
  );
}

/** A subnet the user chose must not overlap anything on the host. Pure. */
export function checkSubnet(wanted: Cidr, taken: readonly HostNetwork[]): void {
  const clash = taken.find((t) => overlaps(t.cidr, wanted));
  if (clash) {
    throw new NetworkError(
      `subnet ${formatCidr(wanted)} overlaps ${clash.text} on ${clash.device}; choose a subnet that no interface or route on this host uses`,
      { kind: 'Conflict' },
    );
  }
}

/** A locally administered, unicast MAC for a guest, from its address. Pure. */
export function guestMac(address: string): string {
  const octets = address.split('.').map((o) => Number(o).toString(16).padStart(2, '0'));
  return `52:54:${octets.join(':')}`;
}
