import {
  claimedPorts,
  memberAndPeers,
  memberBase,
  type MemberRequest,
  type MemberView,
  type NetworkDriver,
  type NetworkReporter,
  type UserMember,
  type UserNetworkRecord,
} from './driver.js';
import { hostsFile, resolvConf } from './plan.js';
import { portKey, resolvePorts } from './ports.js';
import { NetworkError, type NetworkSettings } from './settings.js';

/** QEMU user networking's plan: the guest is always 10.0.2.15; the others appear from .100 on. */
export const USER_SUBNET = '10.0.2.0/24';
const USER_GUEST = { ip: '10.0.2.15', gateway: '10.0.2.2', dns: '10.0.2.3' } as const;
const USER_PEERS_FROM = 100;

export function allowListRefused(): NetworkError {
  return new NetworkError(
    'an egress allow-list needs network bridge (root or sudo); QEMU user networking can only allow everything or nothing',
  );
}

export function subnetRefused(subnet: string): NetworkError {
  return new NetworkError(`a subnet (${subnet}) needs network bridge; user networking has its own`);
}

/** A user network's record: QEMU's fixed plan, nothing on the host. Refuses what user networking cannot do. */
export function planUserNetwork(
  id: string,
  settings: NetworkSettings,
  reporter: NetworkReporter,
): UserNetworkRecord {
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

/** The first address from .100 on that no member has. Pure. */
export function nextUserAddress(members: readonly { address: string }[]): string {
  const used = new Set(members.map((m) => m.address));
  for (let n = USER_PEERS_FROM; n < 255; n++) {
    const address = `10.0.2.${n}`;
    if (!used.has(address)) return address;
  }
  throw new NetworkError(`the job network holds at most ${255 - USER_PEERS_FROM} services in user mode`, {
    kind: 'Conflict',
  });
}

/**
 * QEMU's own NAT per VM. Service-to-service traffic goes over host loopback:
 * each member's container ports are forwarded from loopback ports, and the
 * other guests reach them through guestfwd.
 */
export class UserDriver implements NetworkDriver {
  constructor(readonly record: UserNetworkRecord) {}

  async create(): Promise<void> {
    // QEMU makes the network with each VM; there is nothing on the host.
  }

  async addMember(request: MemberRequest): Promise<void> {
    const member = await memberBase(request, nextUserAddress(this.record.members), this.record);
    const claimed = claimedPorts(this.record);
    for (const port of member.published) claimed.add(portKey(port.protocol, port.hostPort));
    const ports = [...new Set(request.containerPorts)];
    const bound = await resolvePorts(
      ports.map((port) => ({ hostIp: '127.0.0.1', hostPort: 0, containerPort: port, protocol: 'tcp' })),
      claimed,
    );
    const internal = bound.map((p) => ({ containerPort: p.containerPort, hostPort: p.hostPort }));
    this.record.members.push({ ...member, internal });
  }

  async removeMembers(services: ReadonlySet<string>): Promise<void> {
    this.record.members = this.record.members.filter((m) => !services.has(m.service));
  }

  async publish(): Promise<void> {
    // Each VM's QEMU forwards its own ports (MemberView.forwards).
  }

  async remove(): Promise<void> {
    // The forwards end with each VM's QEMU.
  }

  view(service: string, connect: string): MemberView {
    const { self, others, names, peers } = memberAndPeers(this.record.members, service);
    return {
      machine: {
        kind: 'user',
        restrict: this.record.egress === 'deny',
        guestForwards: others.flatMap((m) =>
          m.internal.map((i) => ({ address: m.address, port: i.containerPort, hostPort: i.hostPort })),
        ),
        connect,
      },
      guest: {
        ip: USER_GUEST.ip,
        prefix: 24,
        gateway: USER_GUEST.gateway,
        hosts: hostsFile({ address: USER_GUEST.ip, names }, peers),
        resolvConf: resolvConf(this.record.dns),
      },
      published: self.published,
      // A replica's published ports are the group's: hyper's forwarder binds them, not each QEMU.
      forwards: [...(self.group ? [] : self.published), ...loopbackForwards(self)],
    };
  }
}

/** The loopback ports the other guests reach a member's container ports on. */
function loopbackForwards(member: UserMember): MemberView['forwards'] {
  return member.internal.map((i) => ({
    hostIp: '127.0.0.1',
    hostPort: i.hostPort,
    containerPort: i.containerPort,
    protocol: 'tcp' as const,
  }));
}
