import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { resolveAllowList } from '../../../src/network/allow-list.js';
import { firewallPlan, nextBridgeAddress, nextTap } from '../../../src/network/bridge-driver.js';
import { claimedPorts, memberAndPeers, type BridgeNetworkRecord } from '../../../src/network/driver.js';
import { memberView } from '../../../src/network/job.js';
import { networkFile, readNetwork, withLock, writeNetwork } from '../../../src/network/store.js';
import { nextUserAddress, planUserNetwork, USER_SUBNET } from '../../../src/network/user-driver.js';
import type { NetworkSettings } from '../../../src/network/settings.js';

describe('resolveAllowList', () => {
  const lookups: Record<string, string[]> = {
    'mirror.example': ['192.0.2.80', '192.0.2.81'],
    'pypi.example': ['192.0.2.80'],
  };
  const resolve = async (name: string) => {
    const found = lookups[name];
    if (!found) throw new Error(`getaddrinfo ENOTFOUND ${name}`);
    return found.map((address) => ({ address }));
  };
  test('addresses and networks pass as CIDRs; names become /32s and hosts entries, each address once', async () =>
    expect(
      await resolveAllowList(['10.9.0.0/16', '192.0.2.7', 'mirror.example', 'pypi.example'], resolve),
    ).toEqual({
      cidrs: ['10.9.0.0/16', '192.0.2.7/32', '192.0.2.80/32', '192.0.2.81/32'],
      hosts: [
        { address: '192.0.2.80', names: ['mirror.example'] },
        { address: '192.0.2.81', names: ['mirror.example'] },
        { address: '192.0.2.80', names: ['pypi.example'] },
      ],
    }));
  test('a name that does not resolve is named', async () =>
    await expect(resolveAllowList(['nowhere.example'], resolve)).rejects.toThrow(
      'egress allow-list: cannot resolve "nowhere.example": getaddrinfo ENOTFOUND nowhere.example',
    ));
});

describe('addresses and TAPs', () => {
  test('user mode: the others from 10.0.2.100 on, gaps first', () => {
    expect(nextUserAddress([])).toBe('10.0.2.100');
    expect(nextUserAddress([{ address: '10.0.2.100' }, { address: '10.0.2.102' }])).toBe('10.0.2.101');
    const full = Array.from({ length: 155 }, (_, n) => ({ address: `10.0.2.${100 + n}` }));
    expect(() => nextUserAddress(full)).toThrow('the job network holds at most 155 services in user mode');
  });
  const member = (address: string, tap: string) => ({
    service: tap,
    aliases: [],
    address,
    tap,
    published: [],
  });
  test('bridge mode: after the gateway, gaps first; a full subnet is named', () => {
    expect(nextBridgeAddress({ subnet: '10.1.0.0/29', members: [] })).toBe('10.1.0.2');
    expect(
      nextBridgeAddress({
        subnet: '10.1.0.0/29',
        members: [member('10.1.0.2', 'a'), member('10.1.0.4', 'b')],
      }),
    ).toBe('10.1.0.3');
    const full = [2, 3, 4, 5, 6].map((n) => member(`10.1.0.${n}`, `t${n}`));
    expect(() => nextBridgeAddress({ subnet: '10.1.0.0/29', members: full })).toThrow(
      'subnet 10.1.0.0/29 is full',
    );
  });
  test('TAPs are numbered on the bridge name, gaps first', () => {
    expect(nextTap({ bridge: 'hy1', members: [] })).toBe('hy1t0');
    expect(
      nextTap({ bridge: 'hy1', members: [member('10.1.0.2', 'hy1t0'), member('10.1.0.3', 'hy1t2')] }),
    ).toBe('hy1t1');
  });
});

describe('planUserNetwork', () => {
  const settings = (given: Partial<NetworkSettings>): NetworkSettings => ({
    mode: 'user',
    egress: 'allow',
    allow: [],
    ...given,
  });
  const reporter = () => {
    const lines: string[] = [];
    return {
      lines,
      info: (l: string) => lines.push(`info ${l}`),
      warn: (l: string) => lines.push(`warn ${l}`),
    };
  };
  test('QEMU fixed plan; its DNS only when egress is allowed', () => {
    expect(planUserNetwork('00000001', settings({ egress: 'deny' }), reporter())).toEqual({
      id: '00000001',
      mode: 'user',
      egress: 'deny',
      allow: [],
      allowCidrs: [],
      allowHosts: [],
      subnet: USER_SUBNET,
      gateway: '10.0.2.2',
      dns: [],
      members: [],
    });
    expect(planUserNetwork('00000001', settings({}), reporter()).dns).toEqual(['10.0.2.3']);
  });
  test('asked for, egress allow is a note; auto falling back to it is a warning', () => {
    const asked = reporter();
    planUserNetwork('00000001', settings({}), asked);
    expect(asked.lines[0]).toBe('info network: user (QEMU user networking)');
    expect(asked.lines[1]).toMatch(/^info network user with egress allow: /);
    expect(asked.lines).toHaveLength(2);
    const fallen = reporter();
    planUserNetwork('00000001', settings({ mode: 'auto' }), fallen);
    expect(fallen.lines.map((l) => l.slice(0, 5))).toEqual(['warn ']);
  });
  test.each([
    [{ egress: 'deny' as const, allow: ['192.0.2.7'] }, 'an egress allow-list needs network bridge'],
    [{ subnet: '10.30.0.0/24' }, 'a subnet (10.30.0.0/24) needs network bridge'],
  ])('%j is refused', (given, message) =>
    expect(() => planUserNetwork('00000001', settings(given), reporter())).toThrow(message),
  );
});

describe('memberAndPeers', () => {
  const members = [
    { service: 'db', aliases: ['pg'], address: '10.0.2.100', published: [] },
    { service: 'app', aliases: [], address: '10.0.2.101', published: [] },
  ];
  test('own names, and the others as peers', () =>
    expect(memberAndPeers(members, 'app')).toMatchObject({
      names: ['app'],
      peers: [{ address: '10.0.2.100', names: ['db', 'pg'] }],
    }));
  test('a stranger is an error', () =>
    expect(() => memberAndPeers(members, 'web')).toThrow('web is not on the job network'));
});

// As written before the drivers were split: bridge members also carried `internal: []`.
const OLD_BRIDGE_FILE = `{
  "id": "ab12cd34", "mode": "bridge", "egress": "deny",
  "allow": ["192.0.2.0/24"], "allowCidrs": ["192.0.2.0/24"], "allowHosts": [],
  "subnet": "10.213.8.0/24", "gateway": "10.213.8.1", "dns": [],
  "bridge": "hyab12cd34", "firewall": "nft", "sudo": true,
  "members": [
    { "service": "db", "aliases": [], "address": "10.213.8.2",
      "published": [{ "hostIp": "127.0.0.1", "hostPort": 40000, "containerPort": 5432, "protocol": "tcp" }],
      "internal": [], "tap": "hyab12cd34t0" }
  ]
}`;

describe('network.json', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'hyper-network-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  test('a file from before the split reads as the bridge network it was', async () => {
    await writeFile(networkFile(dir), OLD_BRIDGE_FILE);
    const record = (await readNetwork(dir)) as BridgeNetworkRecord;
    expect(memberView(record, 'db', '/c').machine).toEqual({
      kind: 'tap',
      ifname: 'hyab12cd34t0',
      mac: '52:54:0a:d5:08:02',
    });
    expect(firewallPlan(record).forwards).toEqual([
      {
        protocol: 'tcp',
        hostIp: '127.0.0.1',
        hostPort: 40000,
        addresses: ['10.213.8.2'],
        containerPort: 5432,
      },
    ]);
  });
  test('a member with a namespace of its own: QEMU opens the TAP inside it, which has the same name in each', async () => {
    const record = JSON.parse(OLD_BRIDGE_FILE) as BridgeNetworkRecord;
    const [db] = record.members;
    record.members = [{ ...(db as BridgeNetworkRecord['members'][number]), netns: 'hyab12cd34t0' }];
    expect(memberView(record, 'db', '/c').machine).toEqual({
      kind: 'tap',
      ifname: 'tap0',
      mac: '52:54:0a:d5:08:02',
      netns: '/run/netns/hyab12cd34t0',
    });
  });
  test('written and read back whole; none is undefined', async () => {
    expect(await readNetwork(dir)).toBeUndefined();
    const record = planUserNetwork(
      '00000001',
      { mode: 'user', egress: 'deny', allow: [] },
      {
        info: () => undefined,
        warn: () => undefined,
      },
    );
    await writeNetwork(dir, record);
    expect(await readNetwork(dir)).toEqual(record);
  });
  test('the lock lets one change in at a time, and is gone after', async () => {
    const order: string[] = [];
    const work = (name: string) => async () => {
      order.push(`${name} in`);
      await new Promise((resolve) => setTimeout(resolve, 30));
      order.push(`${name} out`);
    };
    await Promise.all([withLock(dir, work('a')), withLock(dir, work('b'))]);
    expect([
      ['a in', 'a out', 'b in', 'b out'],
      ['b in', 'b out', 'a in', 'a out'],
    ]).toContainEqual(order);
    expect(await readdir(dir)).toEqual([]);
  });
});

test('the ports a job has handed out: every member published port, and user mode loopback ones', () => {
  const record = {
    mode: 'user' as const,
    id: 'x',
    egress: 'allow' as const,
    allow: [],
    allowCidrs: [],
    allowHosts: [],
    subnet: '10.0.2.0/24',
    gateway: '10.0.2.2',
    dns: [],
    members: [
      {
        service: 'dies',
        aliases: [],
        address: '10.0.2.100',
        published: [{ hostIp: '127.0.0.1', hostPort: 38465, containerPort: 8080, protocol: 'tcp' as const }],
        internal: [{ containerPort: 8080, hostPort: 38465 }],
      },
      {
        service: 'later',
        aliases: [],
        address: '10.0.2.101',
        published: [{ hostIp: '127.0.0.1', hostPort: 5353, containerPort: 53, protocol: 'udp' as const }],
        internal: [{ containerPort: 80, hostPort: 46149 }],
      },
    ],
  };
  expect([...claimedPorts(record)].sort()).toEqual(['tcp:38465', 'tcp:46149', 'udp:5353']);
});
