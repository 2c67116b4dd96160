import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';

/**
 * A network namespace a test makes for itself: everything the bridge-mode
 * tests build (bridges, veths, rules) lives in here, and their traffic goes
 * only to addresses in here or in its `outside` namespace. Removing the
 * namespaces removes anything left inside, and `remove` also removes the
 * members' own namespaces (hyper makes them beside this one) left behind.
 */
export class TestNetwork {
  private readonly servers: ResultPromise[] = [];
  private readonly bridges = new Set<string>();

  private constructor(
    readonly ns: string,
    readonly outside: string,
  ) {}

  /**
   * `ns` (the "runner host") reaches `outside` over a veth: ns is 192.0.2.2,
   * outside is 192.0.2.1 and also holds 198.51.100.1 and the stand-in for the
   * metadata service, 169.254.169.254. ns routes everything to outside.
   */
  static async create(): Promise<TestNetwork> {
    const id = randomBytes(3).toString('hex');
    const net = new TestNetwork(`hyt-${id}`, `hyo-${id}`);
    const ip = (...args: string[]) => execa('ip', args);
    await ip('netns', 'add', net.ns);
    await ip('netns', 'add', net.outside);
    await ip('-n', net.ns, 'link', 'set', 'lo', 'up');
    await ip('-n', net.outside, 'link', 'set', 'lo', 'up');
    await ip(
      'link',
      'add',
      `hyv${id}a`,
      'netns',
      net.ns,
      'type',
      'veth',
      'peer',
      'name',
      `hyv${id}b`,
      'netns',
      net.outside,
    );
    await ip('-n', net.ns, 'addr', 'add', '192.0.2.2/24', 'dev', `hyv${id}a`);
    await ip('-n', net.ns, 'link', 'set', `hyv${id}a`, 'up');
    await ip('-n', net.ns, 'route', 'add', 'default', 'via', '192.0.2.1');
    await ip('-n', net.outside, 'addr', 'add', '192.0.2.1/24', 'dev', `hyv${id}b`);
    await ip('-n', net.outside, 'addr', 'add', '198.51.100.1/32', 'dev', 'lo');
    await ip('-n', net.outside, 'addr', 'add', '169.254.169.254/32', 'dev', 'lo');
    await ip('-n', net.outside, 'link', 'set', `hyv${id}b`, 'up');
    return net;
  }

  /**
   * Runs a program inside the namespace. nsenter, not `ip netns exec`: that
   * gives each program a mount namespace of its own (and a /sys without the
   * cgroup mounts), so the namespaces one hyper process mounts under
   * /run/netns for its VMs would be gone for the next.
   */
  exec(program: string, args: readonly string[], env: Record<string, string> = {}) {
    return execa('nsenter', [`--net=/run/netns/${this.ns}`, '--', program, ...args], { env, reject: false });
  }

  /** The hyper CLI bundle, run inside the namespace; the job's bridge, once it has one, is noted (leftovers). */
  async hyper(env: Record<string, string>, ...args: string[]) {
    const result = await this.exec(process.execPath, [path.resolve('dist/cli/index.js'), ...args], {
      HYPER_ACCEL: 'tcg',
      HYPER_NETWORK: '',
      ...env,
    });
    const record = await readFile(path.join(env.HYPER_STATE_DIR ?? '', 'network.json'), 'utf8').catch(
      () => '',
    );
    const bridge = record ? (JSON.parse(record) as { bridge?: string }).bridge : undefined;
    if (bridge) this.bridges.add(bridge);
    return result;
  }

  /** The member namespaces of the bridges this network's jobs had (on the host: hyper mounts them under /run/netns). */
  async memberNamespaces(): Promise<string[]> {
    return (await execa('ip', ['netns', 'list'])).stdout
      .split('\n')
      .map((line) => line.split(' ')[0] ?? '')
      .filter((name) => [...this.bridges].some((bridge) => new RegExp(`^${bridge}t\\d+$`).test(name)));
  }

  /** A busybox httpd in `namespace` on ADDRESS:PORT, serving `dir`. (Host-side clients are curl: Debian's static busybox wget crashes here.) */
  async serve(namespace: string, listen: string, dir: string): Promise<void> {
    const server = execa(
      'ip',
      ['netns', 'exec', namespace, 'busybox', 'httpd', '-f', '-p', listen, '-h', dir],
      {
        reject: false,
      },
    );
    this.servers.push(server);
    let last = '';
    for (let i = 0; i < 50; i++) {
      const probe = await execa(
        'ip',
        ['netns', 'exec', namespace, 'curl', '-s', '-o', '/dev/null', '-m', '1', `http://${listen}/`],
        {
          reject: false,
        },
      );
      if (probe.exitCode === 0) return;
      last = probe.message ?? `curl exited ${probe.exitCode}`;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    server.kill('SIGKILL');
    const result = await server;
    throw new Error(
      `busybox httpd did not start on ${listen} in ${namespace} (${last}): ${String(result.stderr)}`,
    );
  }

  /**
   * What of ours is left in the namespace: links named hy…, nft tables and
   * iptables chains named hyper…; and, on the host, the members' own network
   * namespaces (named as their links).
   */
  async leftovers(): Promise<{ links: string[]; tables: string[]; chains: string[]; namespaces: string[] }> {
    const links = (await this.exec('ip', ['-o', 'link', 'show'])).stdout
      .split('\n')
      .map((line) => line.split(': ')[1]?.split('@')[0] ?? '')
      .filter((name) => /^hy[0-9a-f]{8}/.test(name));
    const tables = (await this.exec('nft', ['list', 'tables'])).stdout
      .split('\n')
      .filter((line) => line.includes('hyper-'));
    const chains = [
      ...(await this.exec('iptables', ['-t', 'filter', '-S'])).stdout.split('\n'),
      ...(await this.exec('iptables', ['-t', 'nat', '-S'])).stdout.split('\n'),
    ].filter((line) => line.includes('HYPER-'));
    return { links, tables, chains, namespaces: await this.memberNamespaces() };
  }

  async remove(): Promise<void> {
    for (const server of this.servers) server.kill('SIGKILL');
    await Promise.allSettled(this.servers);
    for (const name of await this.memberNamespaces())
      await execa('ip', ['netns', 'del', name], { reject: false });
    await execa('ip', ['netns', 'del', this.ns], { reject: false });
    await execa('ip', ['netns', 'del', this.outside], { reject: false });
  }
}
