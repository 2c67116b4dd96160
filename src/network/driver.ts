import type { GuestNetwork } from '../guest/config.js';
import type { MachineNetwork } from '../vm/hypervisor.js';
import type { FirewallBackend } from './firewall-choice.js';
import type { Peer } from './plan.js';
import { portKey, resolvePorts, type PortSpec, type PublishedPort } from './ports.js';
import { NetworkError, type EgressPolicy } from './settings.js';

/** What every member records, whatever the mode. */
interface MemberBase {
  service: string;
  aliases: string[];
  /** bridge: its address on the bridge; user: the address the other guests reach it at. */
  address: string;
  published: PublishedPort[];
  /** The service this member is one replica of: its published ports are the group's, shared by every replica. */
  group?: string;
  /** Why a replica takes no connections through the group's published ports now; absent while it does. */
  outOfRotation?: string;
}

/** A service on a bridge network. Records written before the split also hold `internal: []`. */
export interface BridgeMember extends MemberBase {
  /** The device on the bridge: the member's TAP, or, when it has a namespace, its veth end (of the same name). */
  tap: string;
  /** The network namespace its TAP is in (createMemberNetns), named as `tap`; absent: the TAP is on the bridge. */
  netns?: string;
}

/** A service on a user network. */
export interface UserMember extends MemberBase {
  /** Each container port the others may reach, on a loopback port of the host. */
  internal: { containerPort: number; hostPort: number }[];
}

export type NetworkMember = BridgeMember | UserMember;

/** What every job network records, whatever the mode. */
interface RecordBase {
  id: string;
  egress: EgressPolicy;
  /** The allow-list as given, and what it resolved to. */
  allow: string[];
  allowCidrs: string[];
  allowHosts: Peer[];
  subnet: string;
  gateway: string;
  dns: string[];
}

export interface BridgeNetworkRecord extends RecordBase {
  mode: 'bridge';
  bridge: string;
  firewall: FirewallBackend;
  /** Whether the host was changed through sudo rather than as root. */
  sudo: boolean;
  members: BridgeMember[];
}

export interface UserNetworkRecord extends RecordBase {
  mode: 'user';
  members: UserMember[];
}

/** The job's network, in <state>/network.json: what was built, so teardown removes exactly that. */
export type NetworkRecord = BridgeNetworkRecord | UserNetworkRecord;

/** What a service brings to the network. */
export interface MemberRequest {
  service: string;
  aliases: string[];
  /** TCP ports the service listens on that other services may use (its EXPOSE, expose: and ports:). */
  containerPorts: number[];
  published: PortSpec[];
  /** The service this one is a replica of; replicas share its published ports. */
  group?: string;
}

export interface NetworkReporter {
  info(line: string): void;
  warn(line: string): void;
}

/**
 * One service's view of the job network: how QEMU connects it, what the guest
 * configures, its published ports, and which host ports QEMU itself forwards.
 */
export interface MemberView {
  machine: MachineNetwork;
  guest: GuestNetwork;
  published: PublishedPort[];
  forwards: PublishedPort[];
}

/** What a job network needs from its mode; each instance holds one network's record and changes it in memory. */
export interface NetworkDriver {
  /** The network as it stands; the caller writes it to network.json after a change. */
  readonly record: NetworkRecord;
  /** Makes the network on the host; a failure removes what it made. */
  create(reporter: NetworkReporter): Promise<void>;
  /** Puts a service on the network: an address, its published ports, its TAP or QEMU's loopback ports. */
  addMember(request: MemberRequest): Promise<void>;
  /** Takes these services off, with what each had on the host. */
  removeMembers(services: ReadonlySet<string>): Promise<void>;
  /** Brings what the host publishes in line with the members. */
  publish(): Promise<void>;
  /** Removes everything the network made on the host. */
  remove(): Promise<void>;
  /** One service's view of the network. Pure. */
  view(service: string, connect: string): MemberView;
}

/** Every host port the job has handed out (published, and user mode's loopback ones), by portKey. Pure. */
export function claimedPorts(record: NetworkRecord): Set<string> {
  const claimed = new Set<string>();
  for (const member of record.members) {
    for (const port of member.published) claimed.add(portKey(port.protocol, port.hostPort));
    if ('internal' in member) for (const port of member.internal) claimed.add(portKey('tcp', port.hostPort));
  }
  return claimed;
}

/** A new member's mode-independent part, with its published ports bound (none the job has handed out). */
export async function memberBase(
  request: MemberRequest,
  address: string,
  record: NetworkRecord,
): Promise<MemberBase> {
  // A replica's siblings already hold the group's ports: it shares them.
  const sibling = request.group ? record.members.find((m) => m.group === request.group) : undefined;
  return {
    service: request.service,
    aliases: request.aliases,
    address,
    published: sibling ? sibling.published : await resolvePorts(request.published, claimedPorts(record)),
    ...(request.group ? { group: request.group } : {}),
  };
}

/**
 * Each published host port and the members behind it: one for a service,
 * the replicas in rotation for a group (none when no replica takes
 * connections). Pure.
 */
export function publishedTargets<M extends MemberBase>(
  members: readonly M[],
): { port: PublishedPort; members: M[] }[] {
  const targets = new Map<string, { port: PublishedPort; members: M[] }>();
  for (const member of members) {
    for (const port of member.published) {
      const key = `${port.hostIp} ${portKey(port.protocol, port.hostPort)}`;
      const target = targets.get(key) ?? { port, members: [] };
      targets.set(key, target);
      if (!member.outOfRotation) target.members.push(member);
    }
  }
  return [...targets.values()];
}

/** A service, its own names, and the other members as its hosts file names them. Pure. */
export function memberAndPeers<M extends MemberBase>(
  members: readonly M[],
  service: string,
): { self: M; others: M[]; names: string[]; peers: Peer[] } {
  const self = members.find((m) => m.service === service);
  if (!self) throw new NetworkError(`${service} is not on the job network`, { kind: 'NotFound' });
  const others = members.filter((m) => m.service !== service);
  return {
    self,
    others,
    names: [self.service, ...self.aliases],
    peers: others.map((m) => ({ address: m.address, names: [m.service, ...m.aliases] })),
  };
}
