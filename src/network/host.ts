import { readFile, writeFile } from 'node:fs/promises';
import { ensureTools } from '../install/tools.js';
import { onPath, run, type Command } from '../process/run.js';
import { parseCidr } from './cidr.js';
import { iptablesSetup, iptablesTeardown, nftDelete, nftRuleset, type FirewallPlan } from './firewall.js';
import type { HostNetwork } from './plan.js';
import { NetworkError } from './settings.js';

/** How we get to change the host's network: as root, or through passwordless sudo. */
export interface Privilege {
  sudo: boolean;
}

export type FirewallBackend = 'nft' | 'iptables';

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Root, or passwordless sudo; undefined (with why) when neither. */
export async function networkPrivilege(): Promise<Privilege | { reason: string }> {
  if (isRoot()) return { sudo: false };
  const sudo = await run({ program: 'sudo', args: ['-n', 'true'] }, { allowFailure: true }).catch(
    () => undefined,
  );
  if (sudo?.exitCode === 0) return { sudo: true };
  return { reason: `not running as root, and sudo ${sudo ? 'asks for a password' : 'is not installed'}` };
}

/** A command run as root: directly, or through `sudo -n`. Pure. */
export function privileged(
  privilege: Privilege,
  program: string,
  args: readonly string[],
  input?: string,
): Command {
  const command = privilege.sudo ? { program: 'sudo', args: ['-n', program, ...args] } : { program, args };
  return input === undefined ? command : { ...command, input };
}

/**
 * nft when it is here, else iptables (nftables installed with apt when
 * neither is); HYPER_FIREWALL=nft|iptables chooses. Where iptables' FORWARD
 * policy is DROP (Docker sets it), iptables: a separate nft table cannot
 * undo that drop, but our chain first in FORWARD accepts our traffic.
 */
export async function firewallBackend(
  privilege: Privilege,
  log: (line: string) => void,
): Promise<FirewallBackend> {
  await ensureTools([{ program: 'ip', aptPackage: 'iproute2' }], log);
  const wanted = process.env.HYPER_FIREWALL;
  if (wanted === 'nft' || wanted === 'iptables') {
    if (!(await onPath(wanted)) && !(await onPath(`/usr/sbin/${wanted}`)))
      throw new NetworkError(`HYPER_FIREWALL=${wanted}, but ${wanted} is not installed`);
    return wanted;
  }
  if (wanted) throw new NetworkError(`HYPER_FIREWALL must be nft or iptables, not "${wanted}"`);
  const has = async (program: string) => (await onPath(program)) || (await onPath(`/usr/sbin/${program}`));
  if (await has('iptables')) {
    const forward = await run(privileged(privilege, 'iptables', ['-w', '-S', 'FORWARD']), {
      allowFailure: true,
    });
    if (/^-P FORWARD DROP$/m.test(forward.stdout)) {
      log('network: iptables FORWARD policy is DROP here (as Docker sets it), so the rules go into iptables');
      return 'iptables';
    }
  }
  for (const backend of ['nft', 'iptables'] as const) if (await has(backend)) return backend;
  await ensureTools([{ program: 'nft', aptPackage: 'nftables' }], log);
  return 'nft';
}

interface IpAddress {
  ifname: string;
  addr_info?: { family: string; local: string; prefixlen: number }[];
}
interface IpRoute {
  dst: string;
  dev?: string;
}

/** Every IPv4 network the host has on an interface or in its main routing table (not the default route). */
export async function hostNetworks(): Promise<HostNetwork[]> {
  const found: HostNetwork[] = [];
  const addresses = JSON.parse(
    (await run({ program: 'ip', args: ['-j', '-4', 'addr', 'show'] })).stdout,
  ) as IpAddress[];
  for (const link of addresses) {
    for (const info of link.addr_info ?? []) {
      if (info.family !== 'inet') continue;
      const text = `${info.local}/${info.prefixlen}`;
      found.push({ device: link.ifname, cidr: parseCidr(text, true), text });
    }
  }
  const routes = JSON.parse(
    (await run({ program: 'ip', args: ['-j', '-4', 'route', 'show'] })).stdout,
  ) as IpRoute[];
  for (const route of routes) {
    if (route.dst === 'default') continue;
    const cidr = parseCidr(route.dst, true);
    found.push({ device: route.dev ?? 'a route', cidr, text: `route ${route.dst}` });
  }
  return found;
}

export async function linkExists(name: string): Promise<boolean> {
  const result = await run({ program: 'ip', args: ['link', 'show', 'dev', name] }, { allowFailure: true });
  return result.exitCode === 0;
}

/** The job's bridge, with the gateway address, up; loopback may be DNATed onto it (published ports). */
export async function createBridge(privilege: Privilege, name: string, gatewayCidr: string): Promise<void> {
  const ip = (...args: string[]): Command => privileged(privilege, 'ip', args);
  await run(ip('link', 'add', name, 'type', 'bridge'));
  await run(ip('addr', 'add', gatewayCidr, 'dev', name));
  await run(ip('link', 'set', name, 'up'));
  await run(privileged(privilege, 'sysctl', ['-q', '-w', `net.ipv4.conf.${name}.route_localnet=1`]));
}

/** One VM's TAP device, owned by the user QEMU runs as, on the bridge. */
export async function createTap(privilege: Privilege, name: string, bridge: string): Promise<void> {
  const ip = (...args: string[]): Command => privileged(privilege, 'ip', args);
  const uid = String(process.getuid?.() ?? 0);
  await run(ip('tuntap', 'add', 'dev', name, 'mode', 'tap', 'user', uid));
  try {
    await run(ip('link', 'set', name, 'master', bridge));
    await run(ip('link', 'set', name, 'up'));
  } catch (error: unknown) {
    await deleteLink(privilege, name);
    throw error;
  }
}

/** Deletes an interface; one already gone is fine. */
export async function deleteLink(privilege: Privilege, name: string): Promise<void> {
  if (!(await linkExists(name))) return;
  await run(privileged(privilege, 'ip', ['link', 'del', name]));
}

/** Guests reach anything outside the bridge only if the host routes; returns whether it had to be turned on. */
export async function enableForwarding(privilege: Privilege): Promise<boolean> {
  const current = (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8').catch(() => '0')).trim();
  if (current === '1') return false;
  if (privilege.sudo) await run(privileged(privilege, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']));
  else await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
  return true;
}

/** Installs (or replaces) the job's rules. */
export async function applyFirewall(
  privilege: Privilege,
  backend: FirewallBackend,
  plan: FirewallPlan,
): Promise<void> {
  if (backend === 'nft') {
    await run(privileged(privilege, 'nft', ['-f', '-'], nftRuleset(plan)));
    return;
  }
  await removeFirewall(privilege, backend, plan.id);
  for (const args of iptablesSetup(plan)) await run(privileged(privilege, 'iptables', ['-w', ...args]));
}

/** Removes the job's rules; rules already gone are fine. */
export async function removeFirewall(
  privilege: Privilege,
  backend: FirewallBackend,
  id: string,
): Promise<void> {
  if (backend === 'nft') {
    await run(privileged(privilege, 'nft', ['-f', '-'], nftDelete(id)), { allowFailure: true });
    return;
  }
  for (const args of iptablesTeardown(id))
    await run(privileged(privilege, 'iptables', ['-w', ...args]), { allowFailure: true });
}

/** Name servers a guest can use: the host's, skipping loopback ones (systemd-resolved's upstreams then). */
export async function upstreamNameServers(): Promise<string[]> {
  for (const file of ['/etc/resolv.conf', '/run/systemd/resolve/resolv.conf']) {
    const text = await readFile(file, 'utf8').catch(() => '');
    const servers = [...text.matchAll(/^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/gm)]
      .map((m) => m[1] as string)
      .filter((server) => !server.startsWith('127.'));
    if (servers.length > 0) return servers;
  }
  return [];
}
