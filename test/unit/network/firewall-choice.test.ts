import {
  chooseFirewall,
  filterProblemHint,
  firstProblemLine,
  forwardPolicy,
  iptablesVariant,
  legacyTablesPresent,
  type FirewallChoice,
  type FirewallFacts,
  type IptablesFacts,
} from '../../../src/network/firewall-choice.js';
import { forwardingRefused, nameServers } from '../../../src/network/host.js';
import { hostFixture } from '../host/fixture.js';

describe('reading the packet filters', () => {
  test.each([
    ['iptables-version-nft.txt', 'nf_tables'],
    ['iptables-version-legacy.txt', 'legacy'],
    ['iptables-version-1.6.txt', 'legacy'],
  ])('%s is %s', (file, variant) => {
    expect(iptablesVariant(hostFixture(file))).toBe(variant);
  });
  test('an unknown --version answer', () => {
    expect(iptablesVariant('')).toBeUndefined();
  });

  test.each([
    ['iptables-S-forward-accept.txt', 'ACCEPT', false],
    ['iptables-S-forward-docker.txt', 'DROP', false],
    ['iptables-S-forward-legacy-warning.txt', 'ACCEPT', true],
  ])('%s: FORWARD %s, legacy tables %s', (file, policy, legacy) => {
    const text = hostFixture(file);
    expect(forwardPolicy(text)).toBe(policy);
    expect(legacyTablesPresent(text)).toBe(legacy);
  });

  test.each([
    ['nft-list-tables-eperm.txt', 'netlink: Error: cache initialization failed: Operation not permitted'],
    [
      'iptables-S-nft-eperm.txt',
      'iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)',
    ],
    [
      'iptables-S-legacy-no-module.txt',
      "iptables v1.8.9 (legacy): can't initialize iptables table `filter': Table does not exist (do you need to insmod?)",
    ],
  ])('the complaint shown for %s', (file, line) => {
    expect(firstProblemLine(hostFixture(file), '?')).toBe(line);
  });
  test('no complaint: the fallback', () => {
    expect(firstProblemLine('\n# Warning: x\n', 'exit code 4')).toBe('exit code 4');
  });

  test.each([
    ['nft-list-tables-eperm.txt', 'CAP_NET_ADMIN'],
    ['iptables-S-nft-eperm.txt', 'CAP_NET_ADMIN'],
    ['nft-list-tables-no-nf-tables.txt', 'the kernel lacks nf_tables'],
    ['iptables-S-legacy-no-module.txt', 'the kernel lacks nf_tables'],
  ])('the hint for %s names %s', (file, hint) => {
    expect(filterProblemHint([hostFixture(file)])).toContain(hint);
  });
});

describe('chooseFirewall', () => {
  const ok = { ok: true } as const;
  const fail = (file: string) => ({ ok: false, error: firstProblemLine(hostFixture(file), '?') }) as const;
  const iptables = (over: Partial<IptablesFacts> = {}): IptablesFacts => ({
    program: 'iptables',
    variant: 'nf_tables',
    list: ok,
    forwardPolicy: 'ACCEPT',
    ...over,
  });
  const legacy = (over: Partial<IptablesFacts> = {}) =>
    iptables({ program: 'iptables-legacy', variant: 'legacy', ...over });

  const cases: [string, FirewallFacts, FirewallChoice | RegExp][] = [
    ['nft works: nft', { nft: ok, iptables: [iptables()] }, { backend: 'nft' }],
    ['only nft installed', { nft: ok, iptables: [] }, { backend: 'nft' }],
    [
      'Docker host: FORWARD DROP in iptables (nf_tables)',
      { nft: ok, iptables: [iptables({ forwardPolicy: 'DROP' })] },
      {
        backend: 'iptables',
        note: 'network: iptables FORWARD policy is DROP here (as Docker sets it), so the rules go into iptables',
      },
    ],
    [
      "Docker's DROP in the legacy tables while iptables is iptables-nft",
      { nft: ok, iptables: [iptables(), legacy({ forwardPolicy: 'DROP' })] },
      {
        backend: 'iptables-legacy',
        note: 'network: iptables-legacy FORWARD policy is DROP here (as Docker sets it), so the rules go into iptables-legacy',
      },
    ],
    [
      'DROP in both flavours',
      { nft: ok, iptables: [iptables({ forwardPolicy: 'DROP' }), legacy({ forwardPolicy: 'DROP' })] },
      /DROP in both the legacy and the nf_tables tables \(iptables, iptables-legacy\)/,
    ],
    [
      'nft installed, kernel without nf_tables, iptables-legacy works',
      {
        nft: fail('nft-list-tables-no-nf-tables.txt'),
        iptables: [iptables({ list: fail('iptables-S-nft-eperm.txt'), forwardPolicy: undefined }), legacy()],
      },
      {
        backend: 'iptables-legacy',
        note: 'network: nft does not work here (netlink: Error: cache initialization failed: Protocol not supported), so the rules go into iptables-legacy',
      },
    ],
    ['iptables only, legacy', { iptables: [iptables({ variant: 'legacy' })] }, { backend: 'iptables' }],
    ['nothing installed: install nftables', { iptables: [] }, { install: 'nftables' }],
    [
      'a container without CAP_NET_ADMIN: nothing works',
      {
        nft: fail('nft-list-tables-eperm.txt'),
        iptables: [iptables({ list: fail('iptables-S-nft-eperm.txt'), forwardPolicy: undefined })],
      },
      {
        error:
          'network bridge needs a packet filter, and none works here: nft list tables: netlink: Error: cache initialization failed: Operation not permitted; ' +
          'iptables -S FORWARD: iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root). ' +
          'Likely this process lacks CAP_NET_ADMIN (in a container, add it with --cap-add NET_ADMIN). ' +
          'Use network user (QEMU user networking) to run without a packet filter',
      },
    ],
    [
      'a kernel without nf_tables or ip_tables',
      {
        nft: fail('nft-list-tables-no-nf-tables.txt'),
        iptables: [legacy({ program: 'iptables', list: fail('iptables-S-legacy-no-module.txt') })],
      },
      /none works here: .*Likely the kernel lacks nf_tables \/ ip_tables/,
    ],
    [
      'HYPER_FIREWALL=nft',
      { wanted: 'nft', nft: ok, iptables: [iptables({ forwardPolicy: 'DROP' })] },
      { backend: 'nft' },
    ],
    [
      'HYPER_FIREWALL=nft without nft',
      { wanted: 'nft', iptables: [iptables()] },
      { error: 'HYPER_FIREWALL=nft, but nft is not installed' },
    ],
    [
      'HYPER_FIREWALL=nft where it does not work',
      { wanted: 'nft', nft: fail('nft-list-tables-eperm.txt'), iptables: [] },
      /^HYPER_FIREWALL=nft, but nftables does not work here \(nft list tables: .*Operation not permitted\): this process lacks CAP_NET_ADMIN/,
    ],
    [
      'HYPER_FIREWALL=iptables',
      { wanted: 'iptables', nft: ok, iptables: [iptables()] },
      { backend: 'iptables' },
    ],
    [
      'HYPER_FIREWALL=iptables without iptables',
      { wanted: 'iptables', nft: ok, iptables: [] },
      { error: 'HYPER_FIREWALL=iptables, but iptables is not installed' },
    ],
    [
      'HYPER_FIREWALL=iptables where it does not work',
      { wanted: 'iptables', iptables: [iptables({ list: fail('iptables-S-legacy-no-module.txt') })] },
      /^HYPER_FIREWALL=iptables, but iptables does not work here .*the kernel lacks/,
    ],
    [
      'HYPER_FIREWALL=pf',
      { wanted: 'pf', nft: ok, iptables: [] },
      { error: 'HYPER_FIREWALL must be nft or iptables, not "pf"' },
    ],
  ];
  test.each(cases)('%s', (_name, facts, expected) => {
    const choice = chooseFirewall(facts);
    if (expected instanceof RegExp) expect('error' in choice ? choice.error : '').toMatch(expected);
    else expect(choice).toEqual(expected);
  });
});

describe('IPv4 forwarding that cannot be turned on', () => {
  test('a read-only /proc/sys names the file and what to do', () => {
    expect(
      forwardingRefused({
        code: 'EROFS',
        message: "EROFS: read-only file system, open '/proc/sys/net/ipv4/ip_forward'",
      }),
    ).toBe(
      'cannot turn on IPv4 forwarding for guest egress: /proc/sys/net/ipv4/ip_forward is read-only here (EROFS), as /proc/sys is in most containers. ' +
        'Turn it on outside (sysctl -w net.ipv4.ip_forward=1 on the host, or docker run --sysctl net.ipv4.ip_forward=1), ' +
        'or use egress deny (no allow-list) or network user',
    );
  });
});

describe('name servers for the guests', () => {
  test.each([
    ['resolv-systemd-stub.txt', []],
    ['resolv-upstream.txt', ['168.63.129.16']],
  ])('%s', (file, servers) => {
    expect(nameServers(hostFixture(file))).toEqual(servers);
  });
  test('no resolv.conf', () => {
    expect(nameServers('')).toEqual([]);
  });
});
