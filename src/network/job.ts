import { randomBytes } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { mkdir, rm, rmdir, stat } from 'node:fs/promises';
import { readStateFile, writeFileAtomic } from '../files.js';
import path from 'node:path';
import { formatCidr, guestCapacity, nthAddress, parseCidr } from './cidr.js';
import {
  applyFirewall,
  createBridge,
  createTap,
  deleteLink,
  enableForwarding,
  firewallBackend,
  hostNetworks,
  linkExists,
  networkPrivilege,
  removeFirewall,
  upstreamNameServers,
  type FirewallBackend,
  type Privilege,
} from './host.js';
import type { FirewallPlan } from './firewall.js';
import {
  checkAliases,
  checkSubnet,
  chooseSubnet,
  guestMac,
  hostsFile,
  resolvConf,
  type Peer,
} from './plan.js';
import type { GuestNetwork } from '../guest/config.js';
import type { MachineNetwork } from '../vm/hypervisor.js';
import { resolvePorts, type PortSpec, type PublishedPort } from './ports.js';
import { NetworkError, type EgressPolicy, type NetworkSettings } from './settings.js';

/** One service on the job network. */
export interface NetworkMember {
  service: string;
  aliases: string[];
  /** bridge: its address on the bridge; user: the address the other guests reach it at. */
  address: string;
  /** bridge: its TAP device. */
  tap?: string;
  published: PublishedPort[];
  /** user: each container port the others may reach, on a loopback port of the host. */
  internal: { containerPort: number; hostPort: number }[];
}

/** The job's network, in <state>/network.json: what was built, so teardown removes exactly that. */
export interface NetworkRecord {
  id: string;
  mode: 'bridge' | 'user';
  egress: EgressPolicy;
  /** The allow-list as given, and what it resolved to. */
  allow: string[];
  allowCidrs: string[];
  allowHosts: Peer[];
  subnet: string;
  gateway: string;
  dns: string[];
  bridge?: string;
  firewall?: FirewallBackend;
  sudo?: boolean;
  members: NetworkMember[];
}

/** What a service brings to the network. */
export interface MemberRequest {
  service: string;
  aliases: string[];
  /** TCP ports the service listens on that other services may use (its EXPOSE, expose: and ports:). */
  containerPorts: number[];
  published: PortSpec[];
}

export interface NetworkReporter {
  info(line: string): void;
  warn(line: string): void;
}

/** QEMU user networking's plan: the guest is always 10.0.2.15; the others appear from .100 on. */
export const USER_SUBNET = '10.0.2.0/24';
const USER_GUEST = { ip: '10.0.2.15', gateway: '10.0.2.2', dns: '10.0.2.3' } as const;
const USER_PEERS_FROM = 100;

export function networkFile(stateDir: string): string {
  return path.join(stateDir, 'network.json');
}

/**
 * The job network's record; undefined when there is none. A damaged one is an
 * error, never a reason to make a second network beside the first.
 */
export async function readNetwork(stateDir: string): Promise<NetworkRecord | undefined> {
  return readStateFile<NetworkRecord>(
    networkFile(stateDir),
    '"hyper down" still stops the VMs; then remove the bridge hy<id> and the firewall table ' +
      'or chains hyper-<id> it made, if any, by hand, and delete the file',
  );
}

async function writeNetwork(stateDir: string, record: NetworkRecord): Promise<void> {
  await writeFileAtomic(networkFile(stateDir), JSON.stringify(record, null, 2));
}

/** Serializes changes to one job's network between hyper processes. */
async function withLock<T>(stateDir: string, work: () => Promise<T>): Promise<T> {
  const lock = path.join(stateDir, 'network.lock');
  await mkdir(stateDir, { recursive: true });
  for (let waited = 0; ; waited += 50) {
    try {
      await mkdir(lock);
      break;
    } catch (error: unknown) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const age = Date.now() - ((await stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now());
      if (age > 120_000) await rmdir(lock).catch(() => undefined);
      if (waited > 120_000)
        throw new NetworkError(`the job network is locked by another hyper process (${lock})`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  try {
    return await work();
  } finally {
    await rmdir(lock).catch(() => undefined);
  }
}

function privilegeOf(record: NetworkRecord): Privilege {
  return { sudo: record.sudo === true };
}

/** The firewall's view of a bridge network. Pure. */
export function firewallPlan(record: NetworkRecord): FirewallPlan {
  return {
    id: record.id,
    bridge: record.bridge ?? '',
    subnet: record.subnet,
    egress: record.egress,
    allow: record.allowCidrs,
    forwards: record.members.flatMap((m) =>
      m.published.map((p) => ({
        protocol: p.protocol,
        hostIp: p.hostIp,
        hostPort: p.hostPort,
        address: m.address,
        containerPort: p.containerPort,
      })),
    ),
  };
}

/** Host names in the allow-list, resolved now: the firewall allows their addresses, the guests' hosts file names them. */
async function resolveAllowList(allow: readonly string[]): Promise<{ cidrs: string[]; hosts: Peer[] }> {
  const cidrs: string[] = [];
  const hosts: Peer[] = [];
  for (const entry of allow) {
    if (/^[\d./]+$/.test(entry)) {
      cidrs.push(formatCidr(parseCidr(entry)));
      continue;
    }
    let addresses;
    try {
      addresses = await lookup(entry, { all: true, family: 4 });
    } catch (error: unknown) {
      throw new NetworkError(`egress allow-list: cannot resolve "${entry}": ${(error as Error).message}`);
    }
    for (const { address } of addresses) {
      cidrs.push(`${address}/32`);
      hosts.push({ address, names: [entry] });
    }
  }
  return { cidrs: [...new Set(cidrs)], hosts };
}

/**
 * What can be refused before any image is pulled: bridge without root or
 * sudo, and an allow-list or subnet where only user networking is possible.
 * A job network that exists already is what it is.
 */
export async function preflightNetwork(stateDir: string, settings: NetworkSettings): Promise<void> {
  if (settings.mode === 'auto' && settings.allow.length === 0 && !settings.subnet) return;
  if (await readNetwork(stateDir)) return;
  const privilege =
    settings.mode === 'user' ? { reason: 'user networking was asked for' } : await networkPrivilege();
  if (!('reason' in privilege)) return;
  if (settings.mode === 'bridge') throw bridgeRefused(privilege.reason);
  if (settings.allow.length > 0) throw allowListRefused();
  if (settings.subnet) throw subnetRefused(settings.subnet);
}

function bridgeRefused(reason: string): NetworkError {
  return new NetworkError(
    `network bridge needs root or passwordless sudo: ${reason}. Use network user (or auto) to run rootless`,
  );
}

function allowListRefused(): NetworkError {
  return new NetworkError(
    'an egress allow-list needs network bridge (root or sudo); QEMU user networking can only allow everything or nothing',
  );
}

function subnetRefused(subnet: string): NetworkError {
  return new NetworkError(`a subnet (${subnet}) needs network bridge; user networking has its own`);
}

/** Which mode `auto` means here, and why; an explicit mode is checked. */
async function decideMode(
  settings: NetworkSettings,
  reporter: NetworkReporter,
): Promise<{ mode: 'user' } | { mode: 'bridge'; privilege: Privilege }> {
  if (settings.mode === 'user') return { mode: 'user' };
  const privilege = await networkPrivilege();
  if ('reason' in privilege) {
    if (settings.mode === 'bridge') throw bridgeRefused(privilege.reason);
    reporter.info(`network: user (QEMU user networking; bridge needs root or sudo: ${privilege.reason})`);
    return { mode: 'user' };
  }
  return { mode: 'bridge', privilege };
}

async function createNetwork(
  stateDir: string,
  settings: NetworkSettings,
  reporter: NetworkReporter,
): Promise<NetworkRecord> {
  const decided = await decideMode(settings, reporter);
  const id = randomBytes(4).toString('hex');
  if (decided.mode === 'user') {
    if (settings.allow.length > 0) throw allowListRefused();
    if (settings.subnet) throw subnetRefused(settings.subnet);
    if (settings.mode === 'user') reporter.info('network: user (QEMU user networking)');
    // A warning when auto fell back to user networking; asked for, it is a note.
    if (settings.egress === 'allow')
      (settings.mode === 'user' ? reporter.info : reporter.warn)(
        "network user with egress allow: QEMU user networking cannot keep guests off this host's own addresses or 169.254.169.254; use network bridge or egress deny for that boundary",
      );
    return {
      id,
      mode: 'user',
      egress: settings.egress,
      allow: [],
      allowCidrs: [],
      allowHosts: [],
      subnet: USER_SUBNET,
      gateway: USER_GUEST.gateway,
      dns: settings.egress === 'allow' ? [USER_GUEST.dns] : [],
      members: [],
    };
  }
  const { privilege } = decided;
  const firewall = await firewallBackend(privilege, reporter.info);
  const allowed = await resolveAllowList(settings.allow);
  const taken = await hostNetworks();
  let subnet;
  if (settings.subnet) {
    subnet = parseCidr(settings.subnet);
    checkSubnet(subnet, taken);
  } else {
    subnet = chooseSubnet(taken, Number.parseInt(id.slice(0, 4), 16));
  }
  const bridge = `hy${id}`;
  if (await linkExists(bridge)) throw new NetworkError(`interface ${bridge} already exists; try again`);
  const record: NetworkRecord = {
    id,
    mode: 'bridge',
    egress: settings.egress,
    allow: settings.allow,
    allowCidrs: allowed.cidrs,
    allowHosts: allowed.hosts,
    subnet: formatCidr(subnet),
    gateway: nthAddress(subnet, 1),
    dns: settings.egress === 'allow' ? await upstreamNameServers() : [],
    bridge,
    firewall,
    sudo: privilege.sudo,
    members: [],
  };
  try {
    await createBridge(privilege, bridge, `${record.gateway}/${subnet.prefix}`);
    await applyFirewall(privilege, firewall, firewallPlan(record));
    if (settings.egress === 'allow' || allowed.cidrs.length > 0) {
      if (await enableForwarding(privilege))
        reporter.info('network: turned on IPv4 forwarding (net.ipv4.ip_forward=1) for guest egress');
    }
  } catch (error: unknown) {
    await destroy(record);
    throw error;
  }
  reporter.info(
    `network: bridge ${bridge} on ${record.subnet} (${privilege.sudo ? 'through sudo' : 'as root'}, ${firewall}, egress ${record.egress}${record.allow.length ? ` except ${record.allow.join(', ')}` : ''})`,
  );
  return record;
}

async function destroy(record: NetworkRecord): Promise<void> {
  if (record.mode !== 'bridge') return;
  const privilege = privilegeOf(record);
  if (record.firewall) await removeFirewall(privilege, record.firewall, record.id);
  for (const member of record.members) if (member.tap) await deleteLink(privilege, member.tap);
  if (record.bridge) await deleteLink(privilege, record.bridge);
}

function nextAddress(record: NetworkRecord): string {
  const used = new Set(record.members.map((m) => m.address));
  if (record.mode === 'user') {
    for (let n = USER_PEERS_FROM; n < 255; n++) {
      const address = `10.0.2.${n}`;
      if (!used.has(address)) return address;
    }
    throw new NetworkError(`the job network holds at most ${255 - USER_PEERS_FROM} services in user mode`);
  }
  const subnet = parseCidr(record.subnet);
  for (let n = 2; n <= guestCapacity(subnet) + 1; n++) {
    const address = nthAddress(subnet, n);
    if (!used.has(address)) return address;
  }
  throw new NetworkError(`subnet ${record.subnet} is full`);
}

/**
 * Puts services on the job network, making the network first if there is
 * none: checks names, picks addresses and host ports, makes TAP devices and
 * firewall rules. All or nothing: a failure removes what this call made.
 */
export async function joinNetwork(
  stateDir: string,
  settings: NetworkSettings,
  requests: readonly MemberRequest[],
  reporter: NetworkReporter,
): Promise<NetworkRecord> {
  return withLock(stateDir, async () => {
    const existing = await readNetwork(stateDir);
    if (existing && settings.mode !== 'auto' && settings.mode !== existing.mode) {
      throw new NetworkError(
        `this job's network is already ${existing.mode}; it cannot also be ${settings.mode} (tear it down first)`,
      );
    }
    const replaced = new Set(requests.map((r) => r.service));
    const kept = (existing?.members ?? []).filter((m) => !replaced.has(m.service));
    checkAliases([...kept, ...requests]);
    const record = existing ?? (await createNetwork(stateDir, settings, reporter));
    const privilege = privilegeOf(record);
    const stale = record.members.filter((m) => replaced.has(m.service));
    const added: NetworkMember[] = [];
    try {
      for (const member of stale) if (member.tap) await deleteLink(privilege, member.tap);
      record.members = kept;
      for (const request of requests) {
        const member: NetworkMember = {
          service: request.service,
          aliases: request.aliases,
          address: nextAddress(record),
          published: await resolvePorts(request.published),
          internal: [],
        };
        if (record.mode === 'user') {
          const ports = [...new Set(request.containerPorts)];
          const bound = await resolvePorts(
            ports.map((port) => ({ hostIp: '127.0.0.1', hostPort: 0, containerPort: port, protocol: 'tcp' })),
          );
          member.internal = bound.map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort }));
        } else {
          member.tap = `${record.bridge}t${tapNumber(record)}`;
          await createTap(privilege, member.tap, record.bridge ?? '');
        }
        record.members.push(member);
        added.push(member);
      }
      if (record.mode === 'bridge' && record.firewall)
        await applyFirewall(privilege, record.firewall, firewallPlan(record));
      await writeNetwork(stateDir, record);
      return record;
    } catch (error: unknown) {
      if (!existing) await destroy(record);
      else for (const member of added) if (member.tap) await deleteLink(privilege, member.tap);
      throw error;
    }
  });
}

function tapNumber(record: NetworkRecord): number {
  const used = new Set(record.members.map((m) => m.tap));
  for (let n = 0; ; n++) if (!used.has(`${record.bridge}t${n}`)) return n;
}

/** The network with this service on it: as `hyper up` planned it, else joined now (`hyper run`, import). */
export async function memberOf(
  stateDir: string,
  settings: NetworkSettings,
  request: MemberRequest,
  reporter: NetworkReporter,
): Promise<{ network: NetworkRecord; joined: boolean }> {
  const planned = await readNetwork(stateDir);
  if (planned?.members.some((m) => m.service === request.service)) return { network: planned, joined: false };
  return { network: await joinNetwork(stateDir, settings, [request], reporter), joined: true };
}

/** Takes services off the network; the last one out removes the network and everything it made on the host. */
export async function leaveNetwork(stateDir: string, services: readonly string[]): Promise<void> {
  await withLock(stateDir, async () => {
    const record = await readNetwork(stateDir);
    if (!record) return;
    const leaving = new Set(services);
    const privilege = privilegeOf(record);
    for (const member of record.members)
      if (leaving.has(member.service) && member.tap) await deleteLink(privilege, member.tap);
    record.members = record.members.filter((m) => !leaving.has(m.service));
    if (record.members.length === 0) {
      await destroy(record);
      await rm(networkFile(stateDir), { force: true });
      return;
    }
    if (record.mode === 'bridge' && record.firewall)
      await applyFirewall(privilege, record.firewall, firewallPlan(record));
    await writeNetwork(stateDir, record);
  });
}

/** Removes the whole network, whoever is still on it (teardown). */
export async function removeNetwork(stateDir: string): Promise<void> {
  await withLock(stateDir, async () => {
    const record = await readNetwork(stateDir);
    if (!record) return;
    await destroy(record);
    await rm(networkFile(stateDir), { force: true });
  });
}

/**
 * One service's view of the job network: how QEMU connects it (and which host
 * ports QEMU itself forwards: user networking's published and loopback ones;
 * none on a bridge, where the firewall publishes), and what the guest
 * configures. Pure.
 */
export function memberView(
  record: NetworkRecord,
  service: string,
  connect: string,
): { machine: MachineNetwork; guest: GuestNetwork; published: PublishedPort[]; forwards: PublishedPort[] } {
  const self = record.members.find((m) => m.service === service);
  if (!self) throw new NetworkError(`${service} is not on the job network`);
  const others = record.members.filter((m) => m.service !== service);
  const peers: Peer[] = others.map((m) => ({ address: m.address, names: [m.service, ...m.aliases] }));
  const selfNames = [self.service, ...self.aliases];
  const resolv = resolvConf(record.dns);
  if (record.mode === 'user') {
    return {
      machine: {
        kind: 'user',
        restrict: record.egress === 'deny',
        guestForwards: others.flatMap((m) =>
          m.internal.map((i) => ({ address: m.address, port: i.containerPort, hostPort: i.hostPort })),
        ),
        connect,
      },
      guest: {
        ip: USER_GUEST.ip,
        prefix: 24,
        gateway: USER_GUEST.gateway,
        hosts: hostsFile({ address: USER_GUEST.ip, names: selfNames }, peers),
        resolvConf: resolv,
      },
      published: self.published,
      forwards: [
        ...self.published,
        ...self.internal.map((i) => ({
          hostIp: '127.0.0.1',
          hostPort: i.hostPort,
          containerPort: i.containerPort,
          protocol: 'tcp' as const,
        })),
      ],
    };
  }
  return {
    machine: { kind: 'tap', ifname: self.tap ?? '', mac: guestMac(self.address) },
    guest: {
      ip: self.address,
      prefix: parseCidr(record.subnet).prefix,
      gateway: record.gateway,
      hosts: hostsFile({ address: self.address, names: selfNames }, [...peers, ...record.allowHosts]),
      resolvConf: resolv,
    },
    published: self.published,
    forwards: [],
  };
}
