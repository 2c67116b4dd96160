import { lookup } from 'node:dns/promises';
import { formatCidr, parseCidr } from './cidr.js';
import type { Peer } from './plan.js';
import { NetworkError } from './settings.js';

/** A name's IPv4 addresses. */
export type LookupIPv4 = (name: string) => Promise<{ address: string }[]>;

const systemLookup: LookupIPv4 = (name) => lookup(name, { all: true, family: 4 });

/**
 * Host names in the allow-list, resolved now: the firewall allows their
 * addresses, the guests' hosts file names them. Addresses and networks pass as
 * CIDRs. Pure but for `resolve`.
 */
export async function resolveAllowList(
  allow: readonly string[],
  resolve: LookupIPv4 = systemLookup,
): Promise<{ cidrs: string[]; hosts: Peer[] }> {
  const cidrs: string[] = [];
  const hosts: Peer[] = [];
  for (const entry of allow) {
    if (/^[\d./]+$/.test(entry)) {
      cidrs.push(formatCidr(parseCidr(entry)));
      continue;
    }
    let addresses;
    try {
      addresses = await resolve(entry);
    } catch (error: unknown) {
      throw new NetworkError(`egress allow-list: cannot resolve "${entry}": ${(error as Error).message}`, {
        cause: error,
      });
    }
    for (const { address } of addresses) {
      cidrs.push(`${address}/32`);
      hosts.push({ address, names: [entry] });
    }
  }
  return { cidrs: [...new Set(cidrs)], hosts };
}
