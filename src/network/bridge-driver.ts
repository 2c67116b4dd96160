import { canMakeNetns } from '../host/namespaces.js';
import { concurrently } from '../process/concurrently.js';
import { resolveAllowList } from './allow-list.js';
import { formatCidr, guestCapacity, nthAddress, parseCidr, type Cidr } from './cidr.js';
import {
  memberAndPeers,
  memberBase,
  publishedTargets,
  type BridgeMember,
  type BridgeNetworkRecord,
  type MemberRequest,
  type MemberView,
  type NetworkDriver,
  type NetworkReporter,
} from './driver.js';
import type { FirewallPlan } from './firewall.js';
import {
  applyFirewall,
  createBridge,
  createMemberNetns,
  createTap,
  deleteLink,
  deleteMemberNetns,
  enableForwarding,
  ensureIpTool,
  firewallBackend,
  hostNetworks,
  linkExists,
  MEMBER_TAP,
  netnsFile,
  removeFirewall,
  upstreamNameServers,
  type Privilege,
} from './host.js';
import { checkSubnet, chooseSubnet, guestMac, hostsFile, resolvConf } from './plan.js';
import { NetworkError, type NetworkSettings } from './settings.js';

/**
 * A bridge network's record, from what the host has: its firewall, the
 * allow-list's addresses, a free subnet, its name servers. Changes nothing.
 */
export async function planBridgeNetwork(
  id: string,
  settings: NetworkSettings,
  privilege: Privilege,
  reporter: NetworkReporter,
): Promise<BridgeNetworkRecord> {
  const bridge = `hy${id}`;
  // Each of these only reads the host; `ip` is there before any of them asks it.
  await ensureIpTool(reporter.info);
  const [firewall, allowed, subnet, taken, dns] = await concurrently([
    firewallBackend(privilege, reporter.info, settings.firewall),
    resolveAllowList(settings.allow),
    pickSubnet(id, settings.subnet),
    linkExists(bridge),
    settings.egress === 'allow' ? upstreamNameServers() : Promise.resolve([]),
  ] as const);
  if (taken) throw new NetworkError(`interface ${bridge} already exists; try again`, { kind: 'Conflict' });
  return {
    id,
    mode: 'bridge',
    egress: settings.egress,
    allow: settings.allow,
    allowCidrs: allowed.cidrs,
    allowHosts: allowed.hosts,
    subnet: formatCidr(subnet),
    gateway: nthAddress(subnet, 1),
    dns,
    bridge,
    firewall,
    sudo: privilege.sudo,
    members: [],
  };
}

/** The subnet asked for, checked against the host's; else a free one, starting where the id points. */
async function pickSubnet(id: string, wanted: string | undefined): Promise<Cidr> {
  const taken = await hostNetworks();
  if (!wanted) return chooseSubnet(taken, Number.parseInt(id.slice(0, 4), 16));
  const subnet = parseCidr(wanted);
  checkSubnet(subnet, taken);
  return subnet;
}

/** The firewall's view of a bridge network. Pure. */
export function firewallPlan(record: BridgeNetworkRecord): FirewallPlan {
  return {
    id: record.id,
    bridge: record.bridge,
    subnet: record.subnet,
    egress: record.egress,
    allow: record.allowCidrs,
    forwards: publishedTargets(record.members).map(({ port, members }) => ({
      protocol: port.protocol,
      hostIp: port.hostIp,
      hostPort: port.hostPort,
      addresses: members.map((m) => m.address),
      containerPort: port.containerPort,
    })),
  };
}

/** The first host address after the gateway that no member has. Pure. */
export function nextBridgeAddress(record: Pick<BridgeNetworkRecord, 'subnet' | 'members'>): string {
  const used = new Set(record.members.map((m) => m.address));
  const subnet = parseCidr(record.subnet);
  for (let n = 2; n <= guestCapacity(subnet) + 1; n++) {
    const address = nthAddress(subnet, n);
    if (!used.has(address)) return address;
  }
  throw new NetworkError(`subnet ${record.subnet} is full`, { kind: 'Conflict' });
}

/** The first TAP name `<bridge>t<n>` that no member has. Pure. */
export function nextTap(record: Pick<BridgeNetworkRecord, 'bridge' | 'members'>): string {
  const used = new Set(record.members.map((m) => m.tap));
  for (let n = 0; ; n++) if (!used.has(`${record.bridge}t${n}`)) return `${record.bridge}t${n}`;
}

/**
 * A Linux bridge with static addresses, a TAP per member, and one firewall
 * table (or chains) per job for isolation, egress and published ports.
 */
export class BridgeDriver implements NetworkDriver {
  private readonly privilege: Privilege;

  constructor(readonly record: BridgeNetworkRecord) {
    this.privilege = { sudo: record.sudo === true };
  }

  async create(reporter: NetworkReporter): Promise<void> {
    const { record, privilege } = this;
    try {
      await createBridge(privilege, record.bridge, `${record.gateway}/${parseCidr(record.subnet).prefix}`);
      await applyFirewall(privilege, record.firewall, firewallPlan(record));
      if (record.egress === 'allow' || record.allowCidrs.length > 0) {
        if (await enableForwarding(privilege))
          reporter.info('network: turned on IPv4 forwarding (net.ipv4.ip_forward=1) for guest egress');
      }
    } catch (error: unknown) {
      await this.remove();
      throw error;
    }
    reporter.info(
      `network: bridge ${record.bridge} on ${record.subnet} (${privilege.sudo ? 'through sudo' : 'as root'}, ${record.firewall}, egress ${record.egress}${record.allow.length ? ` except ${record.allow.join(', ')}` : ''})`,
    );
  }

  async addMember(request: MemberRequest): Promise<void> {
    const member = await memberBase(request, nextBridgeAddress(this.record), this.record);
    const tap = nextTap(this.record);
    // As root, the member's QEMU gets a namespace of its own. Through sudo, QEMU runs as the
    // caller, who cannot enter one, and root without CAP_SYS_ADMIN cannot make one: the TAP
    // then joins the bridge.
    if (this.privilege.sudo || !(await canMakeNetns())) {
      await createTap(this.privilege, tap, this.record.bridge);
      this.record.members.push({ ...member, tap });
    } else {
      await createMemberNetns(tap, this.record.bridge);
      this.record.members.push({ ...member, tap, netns: tap });
    }
  }

  async removeMembers(services: ReadonlySet<string>): Promise<void> {
    for (const member of this.record.members) if (services.has(member.service)) await this.unlink(member);
    this.record.members = this.record.members.filter((m) => !services.has(m.service));
  }

  private async unlink(member: BridgeMember): Promise<void> {
    if (member.netns) await deleteMemberNetns(member.netns);
    else await deleteLink(this.privilege, member.tap);
  }

  async publish(): Promise<void> {
    await applyFirewall(this.privilege, this.record.firewall, firewallPlan(this.record));
  }

  async remove(): Promise<void> {
    await removeFirewall(this.privilege, this.record.firewall, this.record.id);
    for (const member of this.record.members) await this.unlink(member);
    await deleteLink(this.privilege, this.record.bridge);
  }

  view(service: string): MemberView {
    const { self, names, peers } = memberAndPeers(this.record.members, service);
    return {
      machine: self.netns
        ? { kind: 'tap', ifname: MEMBER_TAP, mac: guestMac(self.address), netns: netnsFile(self.netns) }
        : { kind: 'tap', ifname: self.tap, mac: guestMac(self.address) },
      guest: {
        mac: guestMac(self.address),
        ip: self.address,
        prefix: parseCidr(this.record.subnet).prefix,
        gateway: this.record.gateway,
        hosts: hostsFile({ address: self.address, names }, [...peers, ...this.record.allowHosts]),
        resolvConf: resolvConf(this.record.dns),
      },
      published: self.published,
      // The firewall publishes; QEMU forwards nothing.
      forwards: [],
    };
  }
}
