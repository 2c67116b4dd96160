import { formatCidr, nthAddress, overlaps, parseCidr } from '../../../src/network/cidr.js';
import {
  iptablesSetup,
  iptablesTeardown,
  nftDelete,
  nftRuleset,
  type FirewallPlan,
} from '../../../src/network/firewall.js';
import {
  firewallPlan,
  memberView,
  type BridgeNetworkRecord,
  type NetworkRecord,
} from '../../../src/network/job.js';
import { checkAliases, checkSubnet, chooseSubnet, guestMac } from '../../../src/network/plan.js';
import { networkSettings, splitList } from '../../../src/network/settings.js';
import { networkArgs } from '../../../src/vm/qemu/args.js';
import type { MachineSpec } from '../../../src/vm/hypervisor.js';
import { validatePlan } from '../../../src/spec/plan.js';
import { parseComposeProject } from '../../../src/spec/compose.js';
import {
  hostClockNs,
  networkSyncArgv,
  resumeSyncArgv,
  rewriteNetworkFiles,
} from '../../../src/guest/config.js';

const NAMES = { mode: '--network', egress: '--egress', allow: '--egress-allow', subnet: '--subnet' };

describe('cidr', () => {
  test('parses, formats and compares networks', () => {
    expect(formatCidr(parseCidr('10.1.2.0/24'))).toBe('10.1.2.0/24');
    expect(formatCidr(parseCidr('10.1.2.5/16', true))).toBe('10.1.0.0/16');
    expect(overlaps(parseCidr('10.1.0.0/16'), parseCidr('10.1.200.0/24'))).toBe(true);
    expect(overlaps(parseCidr('10.1.0.0/24'), parseCidr('10.1.1.0/24'))).toBe(false);
    expect(nthAddress(parseCidr('10.1.2.0/24'), 1)).toBe('10.1.2.1');
  });
  test('bad networks are named', () => {
    expect(() => parseCidr('10.1.2.5/24')).toThrow(
      '"10.1.2.5/24" has host bits set; the network is 10.1.2.0/24',
    );
    expect(() => parseCidr('10.1.2.0/33')).toThrow('prefix /33 is longer than 32');
    expect(() => parseCidr('10.1.2/24')).toThrow('"10.1.2/24" is not an IPv4 address or CIDR');
    expect(() => nthAddress(parseCidr('10.1.2.0/30'), 3)).toThrow(
      '10.1.2.0/30 has no host number 3; it holds 2',
    );
  });
});

describe('networkSettings', () => {
  test('defaults: auto, egress allowed', () =>
    expect(networkSettings({}, NAMES)).toEqual({ mode: 'auto', egress: 'allow', allow: [] }));
  test('deny with an allow-list and a subnet', () =>
    expect(
      networkSettings(
        {
          mode: 'Bridge',
          egress: 'deny',
          allow: ['pypi.org', '10.9.0.0/16', '192.0.2.7'],
          subnet: '10.30.0.0/24',
        },
        NAMES,
      ),
    ).toEqual({
      mode: 'bridge',
      egress: 'deny',
      allow: ['pypi.org', '10.9.0.0/16', '192.0.2.7'],
      subnet: '10.30.0.0/24',
    }));
  test.each([
    [{ mode: 'host' }, '--network must be auto, bridge or user, not "host"'],
    [{ egress: 'some' }, '--egress must be allow or deny, not "some"'],
    [
      { allow: ['pypi.org'] },
      '--egress-allow lists what guests may reach when --egress is deny; with --egress allow they reach everything already',
    ],
    [
      { egress: 'deny', allow: ['bad_host!'] },
      '--egress-allow: "bad_host!" is neither a host name nor an IPv4 address or CIDR',
    ],
    [
      { egress: 'deny', allow: ['10.0.0.1/8'] },
      '--egress-allow: "10.0.0.1/8" has host bits set; the network is 10.0.0.0/8',
    ],
    [
      { egress: 'deny', allow: ['fd00::1'] },
      '--egress-allow: "fd00::1": only IPv4 addresses and networks are supported',
    ],
    [{ subnet: '10.30.0.0/30' }, '--subnet 10.30.0.0/30: use a prefix from /16 to /29'],
    [{ subnet: 'ten' }, '--subnet: "ten" is not an IPv4 address or CIDR'],
  ])('%j is refused', (given, message) => expect(() => networkSettings(given, NAMES)).toThrow(message));
  test('lists split on commas and newlines', () => expect(splitList('a, b\nc,,')).toEqual(['a', 'b', 'c']));
});

describe('checkAliases', () => {
  test('distinct names pass', () =>
    expect(() =>
      checkAliases([
        { service: 'db', aliases: ['postgres', 'database'] },
        { service: 'app', aliases: ['api'] },
      ]),
    ).not.toThrow());
  test.each([
    [
      [
        { service: 'db', aliases: ['pg'] },
        { service: 'cache', aliases: ['pg'] },
      ],
      'alias "pg" is given twice, by services "db" and "cache"; a name on the network belongs to one service',
    ],
    [[{ service: 'db', aliases: ['pg', 'PG'] }], 'service "db": alias "PG" is given twice'],
    [
      [
        { service: 'db', aliases: [] },
        { service: 'app', aliases: ['db'] },
      ],
      'alias "db" of service "app" is the name of service "db"; a name on the network belongs to one service',
    ],
    [[{ service: 'db', aliases: ['db'] }], 'service "db": alias "db" is its own name'],
    [[{ service: 'db', aliases: ['a b'] }], 'service "db": alias "a b" is not a host name'],
  ])('%j is refused', (members, message) => expect(() => checkAliases(members)).toThrow(message));
  test('validatePlan refuses an alias given twice before anything starts', () => {
    const spec = (name: string, aliases: string[]) => ({
      name,
      image: 'busybox',
      env: [],
      ports: [],
      volumes: [],
      dependsOn: [],
      tmpfs: [],
      aliases,
    });
    expect(() => validatePlan([spec('a', ['x']), spec('b', ['x'])])).toThrow(
      'alias "x" is given twice, by services "a" and "b"',
    );
  });
});

describe('subnets', () => {
  const taken = [
    { device: 'eth0', cidr: parseCidr('10.213.5.7/24', true), text: '10.213.5.7/24' },
    { device: 'eth1', cidr: parseCidr('10.213.6.0/23', true), text: 'route 10.213.6.0/23' },
  ];
  test('the first free /24 from the seed on', () => {
    expect(formatCidr(chooseSubnet(taken, 5))).toBe('10.213.8.0/24');
    expect(formatCidr(chooseSubnet(taken, 255))).toBe('10.213.255.0/24');
    expect(formatCidr(chooseSubnet(taken, 256 + 1))).toBe('10.213.1.0/24');
  });
  test('a chosen subnet that overlaps an interface is refused with its name', () =>
    expect(() => checkSubnet(parseCidr('10.213.0.0/16'), taken)).toThrow(
      'subnet 10.213.0.0/16 overlaps 10.213.5.7/24 on eth0; choose a subnet that no interface or route on this host uses',
    ));
  test('MACs are unicast, locally administered and follow the address', () =>
    expect(guestMac('10.213.8.2')).toBe('52:54:0a:d5:08:02'));
});

const plan: FirewallPlan = {
  id: 'ab12cd34',
  bridge: 'hyab12cd34',
  subnet: '10.213.8.0/24',
  egress: 'deny',
  allow: ['192.0.2.0/24'],
  forwards: [
    { protocol: 'tcp', hostIp: '127.0.0.1', hostPort: 40000, addresses: ['10.213.8.2'], containerPort: 5432 },
    { protocol: 'udp', hostIp: '0.0.0.0', hostPort: 40001, addresses: ['10.213.8.3'], containerPort: 53 },
  ],
};

describe('nftRuleset', () => {
  const rules = nftRuleset(plan);
  test('replaces the table in one transaction', () =>
    expect(rules.split('\n').slice(0, 3)).toEqual([
      'table ip hyper-ab12cd34',
      'delete table ip hyper-ab12cd34',
      'table ip hyper-ab12cd34 {',
    ]));
  test('guests reach no host service, and no link-local address before any egress rule', () => {
    expect(rules).toContain(
      'iifname "hyab12cd34" ct state established,related accept\n    iifname "hyab12cd34" drop',
    );
    const linkLocal = rules.indexOf('iifname "hyab12cd34" ip daddr 169.254.0.0/16 drop');
    expect(linkLocal).toBeGreaterThan(0);
    expect(rules.indexOf('ip daddr { 192.0.2.0/24 } accept')).toBeGreaterThan(linkLocal);
  });
  test('deny drops the rest; allow accepts it', () => {
    expect(rules).toMatch(/ip daddr \{ 192\.0\.2\.0\/24 \} accept\n {4}iifname "hyab12cd34" drop\n {2}\}/);
    expect(nftRuleset({ ...plan, egress: 'allow', allow: [] })).toMatch(
      /iifname "hyab12cd34" accept\n {2}\}/,
    );
  });
  test('published ports: loopback from the host only, any local address from outside too', () => {
    expect(rules).toContain('ip daddr 127.0.0.1 tcp dport 40000 dnat to 10.213.8.2:5432');
    expect(rules).toContain('fib daddr type local udp dport 40001 dnat to 10.213.8.3:53');
    const prerouting = rules.slice(rules.indexOf('chain prerouting-nat'));
    expect(prerouting).not.toContain('127.0.0.1');
  });
  test('loopback is masqueraded onto the bridge, the subnet onto the uplink', () => {
    expect(rules).toContain('oifname "hyab12cd34" ip saddr 127.0.0.0/8 masquerade');
    expect(rules).toContain('ip saddr 10.213.8.0/24 oifname != "hyab12cd34" masquerade');
  });
  test('teardown deletes the table', () =>
    expect(nftDelete('ab12cd34')).toBe('delete table ip hyper-ab12cd34\n'));
});

describe('iptables rules', () => {
  const commands = iptablesSetup(plan).map((argv) => argv.join(' '));
  test('same policy, in our own chains, hooked in last', () => {
    expect(commands.slice(0, 4)).toEqual([
      '-t filter -N HYPER-ab12cd34-IN',
      '-t filter -N HYPER-ab12cd34-FWD',
      '-t nat -N HYPER-ab12cd34-DNAT',
      '-t nat -N HYPER-ab12cd34-SNAT',
    ]);
    expect(commands).toContain('-t filter -A HYPER-ab12cd34-FWD -i hyab12cd34 -d 169.254.0.0/16 -j DROP');
    expect(commands).toContain('-t filter -A HYPER-ab12cd34-FWD -i hyab12cd34 -d 192.0.2.0/24 -j ACCEPT');
    expect(commands).toContain(
      '-t nat -A HYPER-ab12cd34-DNAT -m addrtype --dst-type LOCAL -p udp --dport 40001 -j DNAT --to-destination 10.213.8.3:53',
    );
    expect(commands.slice(-1)).toEqual(['-t nat -I POSTROUTING -j HYPER-ab12cd34-SNAT']);
  });
  test('teardown unhooks before deleting', () => {
    const teardown = iptablesTeardown('ab12cd34').map((argv) => argv.join(' '));
    expect(teardown[0]).toBe('-t filter -D INPUT -j HYPER-ab12cd34-IN');
    expect(teardown.at(-1)).toBe('-t nat -X HYPER-ab12cd34-SNAT');
  });
});

const userRecord: NetworkRecord = {
  id: '00000001',
  mode: 'user',
  egress: 'deny',
  allow: [],
  allowCidrs: [],
  allowHosts: [],
  subnet: '10.0.2.0/24',
  gateway: '10.0.2.2',
  dns: [],
  members: [
    {
      service: 'db',
      aliases: ['postgres'],
      address: '10.0.2.100',
      published: [],
      internal: [{ containerPort: 5432, hostPort: 41000 }],
    },
    {
      service: 'app',
      aliases: [],
      address: '10.0.2.101',
      published: [{ hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
      internal: [{ containerPort: 80, hostPort: 41001 }],
    },
  ],
};

describe('memberView', () => {
  test('user mode: the others at their addresses through the helper; own ports on loopback', () => {
    const view = memberView(userRecord, 'app', '/b/hyper-connect');
    expect(view.machine).toEqual({
      kind: 'user',
      restrict: true,
      guestForwards: [{ address: '10.0.2.100', port: 5432, hostPort: 41000 }],
      connect: '/b/hyper-connect',
    });
    expect(view.guest.hosts).toBe(
      '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.2.15\tapp\n10.0.2.100\tdb postgres\n',
    );
    expect(view.guest.resolvConf).toMatch(/^# no name servers/);
    // QEMU forwards the published port and, on loopback, the port the others reach it at.
    expect(view.published).toEqual([
      { hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' },
    ]);
    expect(view.forwards).toEqual([
      { hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' },
      { hostIp: '127.0.0.1', hostPort: 41001, containerPort: 80, protocol: 'tcp' },
    ]);
  });
  test('bridge mode: a TAP, its own address, allowed hosts by name', () => {
    const bridge: BridgeNetworkRecord = {
      ...userRecord,
      mode: 'bridge',
      egress: 'allow',
      subnet: '10.213.8.0/24',
      gateway: '10.213.8.1',
      bridge: 'hy00000001',
      firewall: 'nft',
      sudo: false,
      dns: ['192.0.2.53'],
      allowHosts: [{ address: '192.0.2.80', names: ['mirror.example'] }],
      members: [
        {
          service: 'db',
          aliases: [],
          address: '10.213.8.2',
          tap: 'hy00000001t0',
          published: [],
        },
        {
          service: 'app',
          aliases: [],
          address: '10.213.8.3',
          tap: 'hy00000001t1',
          published: [{ hostIp: '127.0.0.1', hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
        },
      ],
    };
    const view = memberView(bridge, 'db', '/c');
    // On a bridge the firewall publishes; QEMU forwards nothing.
    expect(view.forwards).toEqual([]);
    expect(memberView(bridge, 'app', '/c').published).toHaveLength(1);
    expect(view.machine).toEqual({ kind: 'tap', ifname: 'hy00000001t0', mac: '52:54:0a:d5:08:02' });
    expect(view.guest).toMatchObject({
      ip: '10.213.8.2',
      prefix: 24,
      gateway: '10.213.8.1',
      resolvConf: 'nameserver 192.0.2.53\n',
    });
    expect(view.guest.hosts).toContain('10.213.8.3\tapp\n192.0.2.80\tmirror.example\n');
    expect(firewallPlan(bridge).forwards).toEqual([
      { protocol: 'tcp', hostIp: '127.0.0.1', hostPort: 8080, addresses: ['10.213.8.3'], containerPort: 80 },
    ]);
  });
  test('a service not on the network is an error', () =>
    expect(() => memberView(userRecord, 'web', '/c')).toThrow('web is not on the job network'));
});

describe('networkArgs', () => {
  const base = {
    ports: [{ protocol: 'tcp', hostIp: '127.0.0.1', hostPort: 8080, guestPort: 80 }],
  } as MachineSpec;
  test('user networking: hostfwd, guestfwd through the helper, restrict for egress deny', () =>
    expect(
      networkArgs({
        ...base,
        network: {
          kind: 'user',
          restrict: true,
          guestForwards: [{ address: '10.0.2.100', port: 5432, hostPort: 41000 }],
          connect: '/a,b/hyper-connect',
        },
      }),
    ).toEqual([
      '-netdev',
      'user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,restrict=on,hostfwd=tcp:127.0.0.1:8080-:80,guestfwd=tcp:10.0.2.100:5432-cmd:/a,,b/hyper-connect 127.0.0.1 41000',
      '-device',
      'virtio-net-device,netdev=net0',
    ]));
  test('a TAP on the bridge, with its MAC; no hostfwd', () =>
    expect(
      networkArgs({ ...base, network: { kind: 'tap', ifname: 'hy1t0', mac: '52:54:0a:d5:08:02' } }),
    ).toEqual([
      '-netdev',
      'tap,id=net0,ifname=hy1t0,script=no,downscript=no',
      '-device',
      'virtio-net-device,netdev=net0,mac=52:54:0a:d5:08:02',
    ]));
});

describe('compose networks', () => {
  test('aliases, expose and the ipam subnet', () => {
    const project = parseComposeProject(
      'services:\n  db:\n    image: postgres\n    expose: ["5432", 5433/tcp]\n    networks:\n      back:\n        aliases: [pg, database]\nnetworks:\n  back:\n    driver: bridge\n    ipam:\n      config:\n        - subnet: 10.30.0.0/24\n',
      '/x/compose.yml',
      () => '',
    );
    expect(project.subnet).toBe('10.30.0.0/24');
    expect(project.services[0]).toMatchObject({ aliases: ['pg', 'database'], expose: [5432, 5433] });
  });
});

describe('guest network files', () => {
  const network = { ip: '10.213.9.2', prefix: 24, gateway: '10.213.9.1', hosts: 'H\n', resolvConf: 'R\n' };
  test('an imported service gets the new address lines, the rest kept', () => {
    const files = rewriteNetworkFiles(
      'hostname=db\nip=10.0.2.15\nprefix=24\ngateway=10.0.2.2\nuser=0\n',
      network,
    );
    expect(files.map((f) => [f.name, f.content.toString()])).toEqual([
      ['settings', 'hostname=db\nip=10.213.9.2\nprefix=24\ngateway=10.213.9.1\nuser=0\n'],
      ['hosts', 'H\n'],
      ['resolv.conf', 'R\n'],
    ]);
  });
  test('a resumed guest re-applies them through one shell', () =>
    expect(networkSyncArgv(network).slice(3)).toEqual(['sh', 'H\n', 'R\n', '10.213.9.2/24', '10.213.9.1']));
  test("with a MAC, the guest's NIC takes it first (a service template's guest has its maker's)", () => {
    const argv = networkSyncArgv({ ...network, mac: '52:54:0a:d5:09:02' });
    expect(argv.slice(3)).toEqual(['sh', 'H\n', 'R\n', '10.213.9.2/24', '10.213.9.1', '52:54:0a:d5:09:02']);
    expect(argv[2]).toContain('ip link set dev eth0 address "$5" && ip addr flush dev eth0');
    expect(networkSyncArgv(network)[2]).not.toContain('address "$5"');
  });
});

describe('a guest resumed from saved state', () => {
  const network = { ip: '10.213.9.2', prefix: 24, gateway: '10.213.9.1', hosts: 'H\n', resolvConf: 'R\n' };
  const clock = 1_764_583_200_123_456_789n;
  test('sets its clock and reseeds its RNG from stdin, then applies the network, in one shell with the same arguments', () => {
    const argv = resumeSyncArgv(clock, network);
    const sync = networkSyncArgv(network);
    expect(argv[2]).toMatch(/^\/bin\/hyper-reseed --clock 1764583200123456789 - \|\| exit \$\?; /);
    expect(argv[2]?.endsWith(`; ${sync[2]}`)).toBe(true);
    expect(argv.slice(3)).toEqual(sync.slice(3));
  });
  test('without a network, only the clock and the reseed; a failure is the exit status', () => {
    expect(resumeSyncArgv(clock)).toEqual([
      '/bin/sh',
      '-c',
      '/bin/hyper-reseed --clock 1764583200123456789 - || exit $?',
    ]);
  });
  test("the host's clock in nanoseconds", () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const now = hostClockNs();
    expect(now >= before && now <= BigInt(Date.now()) * 1_000_000n).toBe(true);
  });
});
