import { firewallPlan } from '../../../src/network/bridge-driver.js';
import { memberBase, publishedTargets, type BridgeNetworkRecord } from '../../../src/network/driver.js';
import { iptablesSetup, nftRuleset, type FirewallPlan } from '../../../src/network/firewall.js';
import { memberView, type UserNetworkRecord } from '../../../src/network/job.js';
import { checkAliases } from '../../../src/network/plan.js';

const port = { hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' as const };

function replica(n: number, outOfRotation?: string) {
  return {
    service: `web.${n}`,
    aliases: ['web', 'frontend'],
    address: `10.213.8.${n + 1}`,
    tap: `hy1t${n}`,
    published: [port],
    group: 'web',
    ...(outOfRotation ? { outOfRotation } : {}),
  };
}

const bridge: BridgeNetworkRecord = {
  id: '00000001',
  mode: 'bridge',
  egress: 'deny',
  allow: [],
  allowCidrs: [],
  allowHosts: [],
  subnet: '10.213.8.0/24',
  gateway: '10.213.8.1',
  dns: [],
  bridge: 'hy00000001',
  firewall: 'nft',
  sudo: false,
  members: [replica(1), replica(2), replica(3)],
};

describe('a published port in front of replicas', () => {
  test('is one target, with every replica in rotation behind it', () =>
    expect(
      publishedTargets(bridge.members).map((t) => [t.port.hostPort, t.members.map((m) => m.service)]),
    ).toEqual([[8080, ['web.1', 'web.2', 'web.3']]]));
  test('a replica out of rotation is left out; with none in rotation the port has no target member', () => {
    expect(
      firewallPlan({ ...bridge, members: [replica(1), replica(2, 'it is unhealthy'), replica(3)] }).forwards,
    ).toEqual([
      {
        protocol: 'tcp',
        hostIp: '127.0.0.1',
        hostPort: 8080,
        addresses: ['10.213.8.2', '10.213.8.4'],
        containerPort: 80,
      },
    ]);
    expect(
      firewallPlan({ ...bridge, members: [replica(1, 'its VM is not running')] }).forwards[0]?.addresses,
    ).toEqual([]);
  });
  test('a new replica shares the ports its siblings hold, and none is bound again', async () => {
    const request = {
      service: 'web.4',
      aliases: ['web'],
      containerPorts: [80],
      published: [{ ...port, hostPort: 0 }],
      group: 'web',
    };
    expect(await memberBase(request, '10.213.8.5', bridge)).toEqual({
      service: 'web.4',
      aliases: ['web'],
      address: '10.213.8.5',
      published: [port],
      group: 'web',
    });
  });
});

const plan: FirewallPlan = {
  id: 'ab12cd34',
  bridge: 'hyab12cd34',
  subnet: '10.213.8.0/24',
  egress: 'deny',
  allow: [],
  forwards: [
    { ...port, addresses: ['10.213.8.2', '10.213.8.3', '10.213.8.4'] },
    { ...port, hostPort: 8081, addresses: [] },
  ],
};

describe('round robin in the packet filter', () => {
  test("nftables: numgen's counter picks the address in turn", () => {
    const rules = nftRuleset(plan);
    expect(rules).toContain(
      'ip daddr 127.0.0.1 tcp dport 8080 dnat to numgen inc mod 3 map { 0 : 10.213.8.2, 1 : 10.213.8.3, 2 : 10.213.8.4 } : 80',
    );
    // A port with nobody behind it is not forwarded: the host refuses the connection.
    expect(rules).not.toContain('dport 8081');
  });
  test('iptables: every nth new connection per rule, the last taking the rest', () => {
    const dnat = iptablesSetup(plan)
      .map((argv) => argv.join(' '))
      .filter((line) => line.includes('--dport 8080'));
    expect(dnat).toEqual([
      '-t nat -A HYPER-ab12cd34-DNAT -d 127.0.0.1 -p tcp --dport 8080 -m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination 10.213.8.2:80',
      '-t nat -A HYPER-ab12cd34-DNAT -d 127.0.0.1 -p tcp --dport 8080 -m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 10.213.8.3:80',
      '-t nat -A HYPER-ab12cd34-DNAT -d 127.0.0.1 -p tcp --dport 8080 -j DNAT --to-destination 10.213.8.4:80',
    ]);
    expect(iptablesSetup(plan).some((argv) => argv.includes('8081'))).toBe(false);
  });
});

describe('replicas on the network', () => {
  test('share the service name and aliases; another service may not take them', () => {
    expect(() => checkAliases(bridge.members)).not.toThrow();
    expect(() => checkAliases([...bridge.members, { service: 'api', aliases: ['web'] }])).toThrow(
      'alias "web" is given twice, by services "web.1" and "api"; a name on the network belongs to one service',
    );
    expect(() => checkAliases([...bridge.members, { service: 'web', aliases: [] }])).toThrow(
      'alias "web" of service "web.1" is the name of service "web"',
    );
  });
  test("each replica's hosts file lists every replica under the service name", () => {
    const hosts = memberView(bridge, 'web.2', '').guest.hosts;
    expect(hosts).toContain('10.213.8.3\tweb.2 web frontend\n');
    expect(hosts).toContain('10.213.8.2\tweb.1 web frontend\n');
    expect(hosts).toContain('10.213.8.4\tweb.3 web frontend\n');
  });
  test("user mode: QEMU forwards a replica's loopback port, not the shared published one (the forwarder binds that)", () => {
    const user: UserNetworkRecord = {
      ...bridge,
      mode: 'user',
      subnet: '10.0.2.0/24',
      gateway: '10.0.2.2',
      members: [1, 2].map((n) => ({
        service: `web.${n}`,
        aliases: ['web'],
        address: `10.0.2.${99 + n}`,
        published: [port],
        group: 'web',
        internal: [{ containerPort: 80, hostPort: 41000 + n }],
      })),
    };
    const view = memberView(user, 'web.1', '/c');
    expect(view.published).toEqual([port]);
    expect(view.forwards).toEqual([
      { hostIp: '127.0.0.1', hostPort: 41001, containerPort: 80, protocol: 'tcp' },
    ]);
  });
});
