import type { EgressPolicy } from './settings.js';

/** Everything a job network's packet filter needs; the renderers below turn it into rules. */
export interface FirewallPlan {
  id: string;
  bridge: string;
  subnet: string;
  egress: EgressPolicy;
  /** CIDRs guests may reach when egress is deny. */
  allow: readonly string[];
  /**
   * Published ports: host side to guest side. Connections are spread over
   * the addresses in turn (a service's replicas); a port with none is not
   * forwarded, so it refuses connections.
   */
  forwards: readonly {
    protocol: 'tcp' | 'udp';
    hostIp: string;
    hostPort: number;
    addresses: readonly string[];
    containerPort: number;
  }[];
}

/** Link-local, where cloud metadata services live (169.254.169.254); never reachable from a guest. */
export const LINK_LOCAL = '169.254.0.0/16';

export function nftTableName(id: string): string {
  return `hyper-${id}`;
}

/** The host-side match for a published port's host address, in nft syntax. */
function nftHostMatch(hostIp: string): string {
  return hostIp === '0.0.0.0' ? 'fib daddr type local' : `ip daddr ${hostIp}`;
}

/**
 * The job's nftables table, replacing any earlier version in one transaction.
 * - input: a guest reaches no service of the host itself (only replies pass);
 * - forward: nothing from outside reaches a guest but replies and published
 *   ports; guests never reach link-local addresses; egress per policy;
 * - nat: published ports are DNATed to their guest, from loopback (output)
 *   and, for non-loopback host addresses, from outside (prerouting); loopback
 *   sources are masqueraded onto the bridge, and egress onto the uplink.
 * Pure.
 */
export function nftRuleset(plan: FirewallPlan): string {
  const table = nftTableName(plan.id);
  const br = `"${plan.bridge}"`;
  const forwarded = plan.forwards.filter((f) => f.addresses.length > 0);
  const dnat = forwarded.map(nftDnat);
  // From outside only what is published beyond loopback.
  const fromOutside = forwarded.filter((f) => !f.hostIp.startsWith('127.')).map(nftDnat);
  const egress =
    plan.egress === 'allow'
      ? [`    iifname ${br} accept`]
      : [
          ...(plan.allow.length ? [`    iifname ${br} ip daddr { ${plan.allow.join(', ')} } accept`] : []),
          `    iifname ${br} drop`,
        ];
  return [
    `table ip ${table}`,
    `delete table ip ${table}`,
    `table ip ${table} {`,
    '  chain input {',
    '    type filter hook input priority 0; policy accept;',
    `    iifname ${br} ct state established,related accept`,
    `    iifname ${br} drop`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority 0; policy accept;',
    `    oifname ${br} ct state established,related accept`,
    `    oifname ${br} ct status dnat accept`,
    `    iifname ${br} oifname ${br} accept`,
    `    oifname ${br} drop`,
    `    iifname ${br} ip daddr ${LINK_LOCAL} drop`,
    ...egress,
    '  }',
    '  chain output-nat {',
    '    type nat hook output priority -100; policy accept;',
    ...dnat,
    '  }',
    '  chain prerouting-nat {',
    '    type nat hook prerouting priority -100; policy accept;',
    ...fromOutside,
    '  }',
    '  chain postrouting-nat {',
    '    type nat hook postrouting priority 100; policy accept;',
    `    oifname ${br} ip saddr 127.0.0.0/8 masquerade`,
    `    ip saddr ${plan.subnet} oifname != ${br} masquerade`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** One published port's DNAT rule: to its address, or to each of several in turn (numgen's round robin). Pure. */
function nftDnat(f: FirewallPlan['forwards'][number]): string {
  const match = `    ${nftHostMatch(f.hostIp)} ${f.protocol} dport ${f.hostPort}`;
  if (f.addresses.length === 1) return `${match} dnat to ${f.addresses[0]}:${f.containerPort}`;
  const map = f.addresses.map((address, i) => `${i} : ${address}`).join(', ');
  return `${match} dnat to numgen inc mod ${f.addresses.length} map { ${map} } : ${f.containerPort}`;
}

/** The nft command that removes the job's table. */
export function nftDelete(id: string): string {
  return `delete table ip ${nftTableName(id)}\n`;
}

/** iptables chain names (at most 28 characters). */
export function iptablesChains(id: string): { input: string; forward: string; dnat: string; snat: string } {
  return {
    input: `HYPER-${id}-IN`,
    forward: `HYPER-${id}-FWD`,
    dnat: `HYPER-${id}-DNAT`,
    snat: `HYPER-${id}-SNAT`,
  };
}

/** Which built-in chain of which table jumps to each of ours. */
function iptablesHooks(id: string): { table: string; from: string; to: string }[] {
  const c = iptablesChains(id);
  return [
    { table: 'filter', from: 'INPUT', to: c.input },
    { table: 'filter', from: 'FORWARD', to: c.forward },
    { table: 'nat', from: 'OUTPUT', to: c.dnat },
    { table: 'nat', from: 'PREROUTING', to: c.dnat },
    { table: 'nat', from: 'POSTROUTING', to: c.snat },
  ];
}

function iptablesHostMatch(hostIp: string): string[] {
  return hostIp === '0.0.0.0' ? ['-m', 'addrtype', '--dst-type', 'LOCAL'] : ['-d', hostIp];
}

/**
 * The same policy as nftRuleset, as iptables commands (each one argv), for
 * hosts without nft. Our chains are created, filled, then hooked in first.
 * Pure.
 */
export function iptablesSetup(plan: FirewallPlan): string[][] {
  const c = iptablesChains(plan.id);
  const br = plan.bridge;
  const filter = (...args: string[]): string[] => ['-t', 'filter', ...args];
  const nat = (...args: string[]): string[] => ['-t', 'nat', ...args];
  const egress =
    plan.egress === 'allow'
      ? [filter('-A', c.forward, '-i', br, '-j', 'ACCEPT')]
      : [
          ...plan.allow.map((cidr) => filter('-A', c.forward, '-i', br, '-d', cidr, '-j', 'ACCEPT')),
          filter('-A', c.forward, '-i', br, '-j', 'DROP'),
        ];
  return [
    ...[c.input, c.forward].map((chain) => filter('-N', chain)),
    ...[c.dnat, c.snat].map((chain) => nat('-N', chain)),
    filter('-A', c.input, '-i', br, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT'),
    filter('-A', c.input, '-i', br, '-j', 'DROP'),
    filter(
      '-A',
      c.forward,
      '-o',
      br,
      '-m',
      'conntrack',
      '--ctstate',
      'ESTABLISHED,RELATED,DNAT',
      '-j',
      'ACCEPT',
    ),
    filter('-A', c.forward, '-i', br, '-o', br, '-j', 'ACCEPT'),
    filter('-A', c.forward, '-o', br, '-j', 'DROP'),
    filter('-A', c.forward, '-i', br, '-d', LINK_LOCAL, '-j', 'DROP'),
    ...egress,
    ...plan.forwards.flatMap((f) => iptablesDnat(c.dnat, f)),
    nat('-A', c.snat, '-o', br, '-s', '127.0.0.0/8', '-j', 'MASQUERADE'),
    nat('-A', c.snat, '-s', plan.subnet, '!', '-o', br, '-j', 'MASQUERADE'),
    ...iptablesHooks(plan.id).map((h) => ['-t', h.table, '-I', h.from, '-j', h.to]),
  ];
}

/**
 * One published port's DNAT rules: one per address, each taking every
 * (n-i)th new connection that reaches it (the statistic match's round
 * robin), the last taking the rest. Pure.
 */
function iptablesDnat(chain: string, f: FirewallPlan['forwards'][number]): string[][] {
  const match = [...iptablesHostMatch(f.hostIp), '-p', f.protocol, '--dport', String(f.hostPort)];
  const count = f.addresses.length;
  return f.addresses.map((address, i) => [
    '-t',
    'nat',
    '-A',
    chain,
    ...match,
    ...(i < count - 1
      ? ['-m', 'statistic', '--mode', 'nth', '--every', String(count - i), '--packet', '0']
      : []),
    '-j',
    'DNAT',
    '--to-destination',
    `${address}:${f.containerPort}`,
  ]);
}

/** Unhooks and deletes the job's chains; each command may fail harmlessly when already gone. Pure. */
export function iptablesTeardown(id: string): string[][] {
  const c = iptablesChains(id);
  return [
    ...iptablesHooks(id).map((h) => ['-t', h.table, '-D', h.from, '-j', h.to]),
    ...[c.input, c.forward].flatMap((chain) => [
      ['-t', 'filter', '-F', chain],
      ['-t', 'filter', '-X', chain],
    ]),
    ...[c.dnat, c.snat].flatMap((chain) => [
      ['-t', 'nat', '-F', chain],
      ['-t', 'nat', '-X', chain],
    ]),
  ];
}
