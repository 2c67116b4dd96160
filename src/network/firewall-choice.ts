/**
 * Which packet filter a bridge network's rules go into, decided from what the
 * host showed: whether nft is installed and can list tables, and for each
 * iptables flavour found (`iptables` itself, and the other flavour when it has
 * tables of its own) which one it is and its FORWARD policy. Pure.
 */

/** `nft`, or the iptables program the rules are written with. */
export type FirewallBackend = 'nft' | 'iptables' | 'iptables-legacy' | 'iptables-nft';

export type IptablesVariant = 'legacy' | 'nf_tables';

/** What a tool said when asked to list rules: it worked, or it failed with this (first line of stderr). */
export type ListAnswer = { ok: true } | { ok: false; error: string };

export interface IptablesFacts {
  program: 'iptables' | 'iptables-legacy' | 'iptables-nft';
  variant?: IptablesVariant | undefined;
  /** `-S FORWARD`'s answer; with it, the policy it printed. */
  list: ListAnswer;
  forwardPolicy?: string | undefined;
}

export interface FirewallFacts {
  /** HYPER_FIREWALL, when set. */
  wanted?: string | undefined;
  /** `nft list tables`' answer; undefined when nft is not installed. */
  nft?: ListAnswer | undefined;
  /** One entry per iptables flavour probed, `iptables` itself first; empty when none is installed. */
  iptables: IptablesFacts[];
}

export type FirewallChoice =
  | { backend: FirewallBackend; note?: string }
  /** Nothing is installed: install nftables, then decide again. */
  | { install: 'nftables' }
  | { error: string };

/** The flavour `iptables --version` names: "iptables v1.8.9 (nf_tables)"; before 1.8 there was only legacy. Pure. */
export function iptablesVariant(versionOutput: string): IptablesVariant | undefined {
  if (/\(nf_tables\)/.test(versionOutput)) return 'nf_tables';
  if (/\(legacy\)/.test(versionOutput)) return 'legacy';
  if (/^iptables v1\.[0-7]\./m.test(versionOutput)) return 'legacy';
  return undefined;
}

/** The FORWARD policy in `iptables -S FORWARD` output ("-P FORWARD DROP"). Pure. */
export function forwardPolicy(listing: string): string | undefined {
  return /^-P FORWARD (\S+)\s*$/m.exec(listing)?.[1];
}

/** iptables-nft warns when the legacy tables also hold rules: Docker may have put its DROP there. Pure. */
export function legacyTablesPresent(output: string): boolean {
  return /iptables-legacy tables present/.test(output);
}

/** The first line of a tool's complaint worth showing (not iptables-nft's "# Warning" lines). Pure. */
export function firstProblemLine(stderr: string, fallback: string): string {
  const line = stderr
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l !== '' && !l.startsWith('#'));
  return line ?? fallback;
}

/** What to do about a filter that cannot list its rules, judged from its complaint. Pure. */
export function filterProblemHint(errors: readonly string[]): string {
  const text = errors.join('\n');
  if (/not permitted|permission denied|you must be root/i.test(text))
    return 'this process lacks CAP_NET_ADMIN (in a container, add it with --cap-add NET_ADMIN)';
  if (
    /protocol not supported|address family not supported|table does not exist|insmod|no such file/i.test(text)
  )
    return 'the kernel lacks nf_tables / ip_tables (load them on the host: modprobe nf_tables, or ip_tables)';
  return 'the kernel or this container does not allow packet filtering';
}

function describe(tool: string, answer: ListAnswer): string {
  return answer.ok ? `${tool} works` : `${tool}: ${answer.error}`;
}

const USE_USER = 'Use network user (QEMU user networking) to run without a packet filter';

/**
 * - HYPER_FIREWALL=nft|iptables is obeyed, or refused naming why it cannot be;
 * - a FORWARD policy of DROP (Docker sets it) in an iptables flavour means our
 *   rules go there: a separate nft table cannot undo that drop, but our chain
 *   first in FORWARD accepts our traffic;
 * - else nft when it can list tables, else an iptables that can;
 * - nothing installed: install nftables; installed but none works: an error
 *   naming each tool's complaint and what to do.
 */
export function chooseFirewall(facts: FirewallFacts): FirewallChoice {
  const { wanted, nft } = facts;
  const iptables = facts.iptables.find((f) => f.program === 'iptables');
  if (wanted !== undefined && wanted !== '') {
    if (wanted === 'nft') {
      if (!nft) return { error: 'HYPER_FIREWALL=nft, but nft is not installed' };
      if (!nft.ok)
        return {
          error: `HYPER_FIREWALL=nft, but nftables does not work here (nft list tables: ${nft.error}): ${filterProblemHint([nft.error])}`,
        };
      return { backend: 'nft' };
    }
    if (wanted === 'iptables') {
      if (!iptables) return { error: 'HYPER_FIREWALL=iptables, but iptables is not installed' };
      if (!iptables.list.ok)
        return {
          error: `HYPER_FIREWALL=iptables, but iptables does not work here (iptables -S FORWARD: ${iptables.list.error}): ${filterProblemHint([iptables.list.error])}`,
        };
      return { backend: 'iptables' };
    }
    return { error: `HYPER_FIREWALL must be nft or iptables, not "${wanted}"` };
  }
  const dropping = facts.iptables.filter((f) => f.list.ok && f.forwardPolicy === 'DROP');
  if (dropping.length > 1) {
    return {
      error: `iptables' FORWARD policy is DROP in both the legacy and the nf_tables tables (${dropping.map((f) => f.program).join(', ')}); guests would need rules in both. Set one policy to ACCEPT, or use network user`,
    };
  }
  const drop = dropping[0];
  if (drop) {
    return {
      backend: drop.program,
      note: `network: ${drop.program} FORWARD policy is DROP here (as Docker sets it), so the rules go into ${drop.program}`,
    };
  }
  if (nft?.ok) return { backend: 'nft' };
  const working = facts.iptables.find((f) => f.list.ok);
  if (working) {
    return {
      backend: working.program,
      ...(nft && !nft.ok
        ? { note: `network: nft does not work here (${nft.error}), so the rules go into ${working.program}` }
        : {}),
    };
  }
  if (!nft && facts.iptables.length === 0) return { install: 'nftables' };
  const complaints = [
    ...(nft ? [describe('nft list tables', nft)] : []),
    ...facts.iptables.map((f) => describe(`${f.program} -S FORWARD`, f.list)),
  ];
  const errors = [
    ...(nft && !nft.ok ? [nft.error] : []),
    ...facts.iptables.flatMap((f) => (f.list.ok ? [] : [f.list.error])),
  ];
  return {
    error: `network bridge needs a packet filter, and none works here: ${complaints.join('; ')}. Likely ${filterProblemHint(errors)}. ${USE_USER}`,
  };
}
