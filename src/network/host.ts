import { readFile, writeFile } from 'node:fs/promises';
import { exists } from '../files.js';
import { probeSudo, isRoot } from '../host/user.js';
import { readSysctlFlag, sysctlWriteProblem } from '../host/sysctl.js';
import { ensureTools } from '../install/tools.js';
import { CommandError, onPath, run, type Command } from '../process/run.js';
import { concurrently } from '../process/concurrently.js';
import { parseCidr } from './cidr.js';
import {
  chooseFirewall,
  firstProblemLine,
  forwardPolicy,
  iptablesVariant,
  legacyTablesPresent,
  type FirewallBackend,
  type FirewallFacts,
  type IptablesFacts,
  type ListAnswer,
} from './firewall-choice.js';
import { iptablesSetup, iptablesTeardown, nftDelete, nftRuleset, type FirewallPlan } from './firewall.js';
import type { HostNetwork } from './plan.js';
import { NetworkError } from './settings.js';

export type { FirewallBackend } from './firewall-choice.js';

/** How we get to change the host's network: as root, or through passwordless sudo. */
export interface Privilege {
  sudo: boolean;
}

/** Root, or passwordless sudo; undefined (with why) when neither. */
export async function networkPrivilege(): Promise<Privilege | { reason: string }> {
  if (isRoot()) return { sudo: false };
  const sudo = await probeSudo();
  if (sudo.usable) return { sudo: true };
  return { reason: `not running as root, and ${sudo.reason}` };
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

async function installed(program: string): Promise<string | undefined> {
  if (await onPath(program)) return program;
  // sbin is not on every user's PATH; sudo's secure_path has it.
  if (await onPath(`/usr/sbin/${program}`)) return `/usr/sbin/${program}`;
  return undefined;
}

/** Runs a listing command as root; never throws: a tool that cannot start or fails gives its complaint. */
async function listAnswer(
  privilege: Privilege,
  program: string,
  args: string[],
): Promise<[ListAnswer, string]> {
  try {
    const result = await run(privileged(privilege, program, args), { allowFailure: true });
    const output = `${result.stdout}\n${result.stderr}`;
    if (result.exitCode === 0) return [{ ok: true }, output];
    return [{ ok: false, error: firstProblemLine(result.stderr, `exit code ${result.exitCode}`) }, output];
  } catch (error: unknown) {
    return [{ ok: false, error: firstProblemLine((error as Error).message, 'could not be run') }, ''];
  }
}

async function probeIptables(
  privilege: Privilege,
  program: IptablesFacts['program'],
): Promise<{ facts: IptablesFacts; legacyTables: boolean } | undefined> {
  const path = await installed(program);
  if (!path) return undefined;
  const [version, [list, output]] = await concurrently([
    run({ program: path, args: ['--version'] }, { allowFailure: true }).catch(() => undefined),
    listAnswer(privilege, path, ['-w', '-S', 'FORWARD']),
  ] as const);
  return {
    facts: {
      program,
      variant: iptablesVariant(`${version?.stdout ?? ''}${version?.stderr ?? ''}`),
      list,
      forwardPolicy: list.ok ? forwardPolicy(output) : undefined,
    },
    legacyTables: legacyTablesPresent(output),
  };
}

/**
 * What the host's packet filters say: nft's answer to `nft list tables`, and
 * `iptables`' flavour and FORWARD policy. The other iptables flavour is asked
 * too when its tables may matter: iptables-nft warns that legacy tables exist
 * (Docker may have put its DROP there), `iptables` is the legacy one, or
 * `iptables` does not work at all. Listing with iptables-legacy loads its
 * tables, so it is not asked otherwise.
 */
async function probeFirewalls(privilege: Privilege, wanted: string | undefined): Promise<FirewallFacts> {
  const [nft, main] = await concurrently([
    installed('nft').then(async (nftPath) =>
      nftPath ? (await listAnswer(privilege, nftPath, ['list', 'tables']))[0] : undefined,
    ),
    probeIptables(privilege, 'iptables'),
  ] as const);
  const iptables: IptablesFacts[] = [];
  if (main) {
    iptables.push(main.facts);
    const legacy = main.facts.variant === 'legacy';
    if (legacy || main.legacyTables || !main.facts.list.ok) {
      const other = await probeIptables(privilege, legacy ? 'iptables-nft' : 'iptables-legacy');
      if (other) iptables.push(other.facts);
    }
  }
  return { wanted, nft, iptables };
}

/** iproute2's `ip`, installed with apt when it is missing. */
export async function ensureIpTool(log: (line: string) => void): Promise<void> {
  await ensureTools([{ program: 'ip', aptPackage: 'iproute2' }], log);
}

/**
 * The packet filter this host's bridge networks use (see chooseFirewall);
 * `wanted` (HYPER_FIREWALL=nft|iptables) chooses. nftables is installed with apt when no
 * filter is; when filters are installed but none works, the error names each
 * one's complaint and what to do.
 */
export async function firewallBackend(
  privilege: Privilege,
  log: (line: string) => void,
  wanted: string | undefined,
): Promise<FirewallBackend> {
  let choice = chooseFirewall(await probeFirewalls(privilege, wanted));
  if ('install' in choice) {
    await ensureTools([{ program: 'nft', aptPackage: 'nftables' }], log);
    choice = chooseFirewall(await probeFirewalls(privilege, wanted));
  }
  if ('error' in choice) throw new NetworkError(choice.error, { kind: 'Unavailable' });
  if ('install' in choice)
    throw new NetworkError('nftables was installed, but nft is still not found', { kind: 'Unavailable' });
  if (choice.note) log(choice.note);
  return choice.backend;
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
  const [addressList, routeList] = await concurrently([
    run({ program: 'ip', args: ['-j', '-4', 'addr', 'show'] }),
    run({ program: 'ip', args: ['-j', '-4', 'route', 'show'] }),
  ] as const);
  const addresses = JSON.parse(addressList.stdout) as IpAddress[];
  for (const link of addresses) {
    for (const info of link.addr_info ?? []) {
      if (info.family !== 'inet') continue;
      const text = `${info.local}/${info.prefixlen}`;
      found.push({ device: link.ifname, cidr: parseCidr(text, true), text });
    }
  }
  const routes = JSON.parse(routeList.stdout) as IpRoute[];
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

/**
 * The job's bridge, with the gateway address, up, in one `ip` process;
 * loopback may be DNATed onto it (published ports), which route_localnet
 * allows (written directly unless through sudo).
 */
export async function createBridge(privilege: Privilege, name: string, gatewayCidr: string): Promise<void> {
  const batch = [
    `link add ${name} type bridge`,
    `addr add ${gatewayCidr} dev ${name}`,
    `link set ${name} up`,
  ];
  await run(privileged(privilege, 'ip', ['-batch', '-'], batch.join('\n')));
  const setting = `net.ipv4.conf.${name}.route_localnet`;
  await turnOn(privilege, setting).catch((error: unknown) => {
    throw new NetworkError(
      `cannot let published ports reach the bridge: ${sysctlWriteProblem(sysctlFile(setting), error as { code?: string; message: string })}`,
      { kind: 'Unavailable', cause: error },
    );
  });
}

/** The /proc/sys file of sysctl `setting` (net.ipv4.ip_forward). Pure. */
function sysctlFile(setting: string): string {
  return `/proc/sys/${setting.replaceAll('.', '/')}`;
}

/** Sets sysctl `setting` to 1: through `sysctl -w` under sudo, else written to its /proc/sys file. */
async function turnOn(privilege: Privilege, setting: string): Promise<void> {
  if (privilege.sudo) await run(privileged(privilege, 'sysctl', ['-q', '-w', `${setting}=1`]));
  else await writeFile(sysctlFile(setting), '1\n');
}

/** The names inside a member's own network namespace (createMemberNetns): the same in each. */
export const MEMBER_TAP = 'tap0';
const MEMBER_VETH = 'eth0';
const MEMBER_BRIDGE = 'br0';

/** Where member namespace `name` is, for QEMU to enter (ip netns keeps them there). */
export function netnsFile(name: string): string {
  return `/run/netns/${name}`;
}

/**
 * One VM's link to the bridge when hyper is root: a network namespace of
 * its own, `name`, holding the TAP its QEMU opens (MEMBER_TAP) and one end
 * of a veth pair whose other end, also `name`, is on the job's bridge; a
 * bridge inside joins the two. QEMU runs in that namespace, which has no
 * address, IPv4 or IPv6 (no link-local one is made), and no route, so a
 * QEMU a guest takes over reaches no host address: only the guest's own
 * frames reach the job's bridge, under the job's firewall. (A TAP moved to
 * another namespace after QEMU opened it loses its carrier, so the TAP is
 * made where QEMU will be.) Two `ip` processes; removing the namespace
 * removes all of it. A namespace of that name left by a hyper that was
 * killed between making it and recording it is one of this job's (the
 * name holds the job's bridge id), and is made again.
 */
export async function createMemberNetns(name: string, bridge: string): Promise<void> {
  const outside = [
    `netns add ${name}`,
    `link add ${name} type veth peer name ${MEMBER_VETH} netns ${name}`,
    `link set dev ${name} addrgenmode none`,
    `link set ${name} master ${bridge}`,
    `link set ${name} up`,
  ];
  const inside = [
    `tuntap add dev ${MEMBER_TAP} mode tap`,
    `link add ${MEMBER_BRIDGE} type bridge`,
    ...[MEMBER_VETH, MEMBER_TAP, MEMBER_BRIDGE].map((device) => `link set dev ${device} addrgenmode none`),
    `link set ${MEMBER_VETH} master ${MEMBER_BRIDGE}`,
    `link set ${MEMBER_TAP} master ${MEMBER_BRIDGE}`,
    ...[MEMBER_VETH, MEMBER_TAP, MEMBER_BRIDGE].map((device) => `link set ${device} up`),
  ];
  if (await exists(netnsFile(name))) await deleteMemberNetns(name);
  try {
    await run({ program: 'ip', args: ['-batch', '-'], input: outside.join('\n') });
    await run({ program: 'ip', args: ['-n', name, '-batch', '-'], input: inside.join('\n') });
  } catch (error: unknown) {
    await deleteMemberNetns(name).catch(() => undefined);
    throw error;
  }
}

/**
 * Removes a member's namespace and, with it, its TAP and veth pair; what is
 * already gone is fine. The pair goes first, at once: a namespace's devices
 * go some time after it is deleted, and the host's end keeps the name a
 * later member may take.
 */
export async function deleteMemberNetns(name: string): Promise<void> {
  await run(
    { program: 'ip', args: ['-force', '-batch', '-'], input: `link del ${name}\nnetns del ${name}` },
    { allowFailure: true },
  );
  if (await linkExists(name))
    throw new NetworkError(`cannot remove ${name}: it is still there after ip link del`);
  if (await exists(netnsFile(name)))
    throw new NetworkError(
      `cannot remove network namespace ${name}: ${netnsFile(name)} is still there after ip netns del`,
    );
}

/** One VM's TAP device, owned by the user QEMU runs as, on the bridge: one `ip` process. */
export async function createTap(privilege: Privilege, name: string, bridge: string): Promise<void> {
  const uid = String(process.getuid?.() ?? 0);
  const batch = [
    `tuntap add dev ${name} mode tap user ${uid}`,
    `link set ${name} master ${bridge}`,
    `link set ${name} up`,
  ];
  try {
    await run(privileged(privilege, 'ip', ['-batch', '-'], batch.join('\n')));
  } catch (error: unknown) {
    // It stops at the first command that fails. When that is the first ("Command failed -:1"), the
    // TAP is not this call's (one of that name was there); after it, it is, and not on the bridge.
    if (!(error instanceof CommandError && /Command failed -:1\b/.test(error.stderr)))
      await deleteLink(privilege, name);
    throw error;
  }
}

/** Deletes an interface; one already gone is fine. */
export async function deleteLink(privilege: Privilege, name: string): Promise<void> {
  if (!(await linkExists(name))) return;
  // It may go meanwhile (a veth whose peer's namespace the kernel is removing): only one still there is an error.
  const result = await run(privileged(privilege, 'ip', ['link', 'del', name]), { allowFailure: true });
  if (result.exitCode !== 0 && (await linkExists(name)))
    throw new NetworkError(
      `cannot remove ${name}: ${result.stderr.trim() || `ip link del exited ${result.exitCode}`}`,
    );
}

export const IP_FORWARD = '/proc/sys/net/ipv4/ip_forward';

/**
 * Guests reach anything outside the bridge only if the host routes; returns
 * whether it had to be turned on. Unreadable reads as off; a /proc/sys that
 * cannot be written (read-only in most containers) is an error naming it.
 */
export async function enableForwarding(privilege: Privilege): Promise<boolean> {
  const current = await readSysctlFlag(IP_FORWARD);
  if (current === true) return false;
  try {
    await turnOn(privilege, 'net.ipv4.ip_forward');
  } catch (error: unknown) {
    throw new NetworkError(forwardingRefused(error as { code?: string; message: string }), {
      kind: 'Unavailable',
      cause: error,
    });
  }
  return true;
}

/** The error when IPv4 forwarding cannot be turned on, with what to do instead. Pure. */
export function forwardingRefused(error: { code?: string | undefined; message: string }): string {
  return (
    `cannot turn on IPv4 forwarding for guest egress: ${sysctlWriteProblem(IP_FORWARD, error)}. ` +
    'Turn it on outside (sysctl -w net.ipv4.ip_forward=1 on the host, or docker run --sysctl net.ipv4.ip_forward=1), ' +
    'or use egress deny (no allow-list) or network user'
  );
}

/** Installs (or replaces) the job's rules. */
export async function applyFirewall(
  privilege: Privilege,
  backend: FirewallBackend,
  plan: FirewallPlan,
): Promise<void> {
  const program = (await installed(backend)) ?? backend;
  if (backend === 'nft') {
    await run(privileged(privilege, program, ['-f', '-'], nftRuleset(plan)));
    return;
  }
  await removeFirewall(privilege, backend, plan.id);
  for (const args of iptablesSetup(plan)) await run(privileged(privilege, program, ['-w', ...args]));
}

/** Removes the job's rules; rules already gone are fine. */
export async function removeFirewall(
  privilege: Privilege,
  backend: FirewallBackend,
  id: string,
): Promise<void> {
  const program = (await installed(backend)) ?? backend;
  if (backend === 'nft') {
    await run(privileged(privilege, program, ['-f', '-'], nftDelete(id)), { allowFailure: true });
    return;
  }
  for (const args of iptablesTeardown(id))
    await run(privileged(privilege, program, ['-w', ...args]), { allowFailure: true });
}

/** The IPv4 name servers of resolv.conf text, without loopback ones (a local stub such as systemd-resolved). Pure. */
export function nameServers(resolvConf: string): string[] {
  return [...resolvConf.matchAll(/^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/gm)]
    .map((m) => m[1] as string)
    .filter((server) => !server.startsWith('127.'));
}

/**
 * Name servers a guest can use: the host's, skipping loopback ones
 * (systemd-resolved's upstreams then). None found (no resolv.conf, only
 * IPv6 or a stub) is an empty list.
 */
export async function upstreamNameServers(): Promise<string[]> {
  for (const file of ['/etc/resolv.conf', '/run/systemd/resolve/resolv.conf']) {
    const servers = nameServers(await readFile(file, 'utf8').catch(() => ''));
    if (servers.length > 0) return servers;
  }
  return [];
}
