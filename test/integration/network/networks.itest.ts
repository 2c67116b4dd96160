import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import path from 'node:path';
import { qemuProcessesUnder } from '../../support/cli.js';
import { busyboxLayout } from '../../support/fixtures.js';
import { TestNetwork } from '../../support/netns.js';

// Job networks with real VMs, in both modes. Everything runs inside network
// namespaces each test makes (test/support/netns.ts): the "runner host" is a
// namespace whose loopback the host steps use, and "outside" is another one
// behind a veth, holding the stand-in for the metadata service. Guests reach
// each other by name; these tests check what else they can and cannot reach.

/** What the busybox fixture's httpd serves. */
const PAGE = '<h1>hello from a hyper-services microVM</h1>';
// Fixed at load time: the jobs' state dirs below are named from it.
const work = `/tmp/hyper-networks-${process.pid}`;
let image: string;
let net: TestNetwork;

beforeAll(async () => {
  await mkdir(work);
  image = `oci:${await busyboxLayout()}`;
  net = await TestNetwork.create();
  // Listeners: two "internet" hosts, the metadata stand-in, and the runner host's own service.
  for (const [namespace, listen, text] of [
    [net.outside, '192.0.2.1:8000', 'internet'],
    [net.outside, '198.51.100.1:8000', 'elsewhere'],
    [net.outside, '169.254.169.254:80', 'metadata'],
    [net.ns, '0.0.0.0:9000', 'host service'],
  ] as const) {
    const dir = path.join(work, `www-${namespace}-${listen.replace(/[.:]/g, '-')}`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    await writeFile(path.join(dir, 'index.html'), `${text}\n`);
    await net.serve(namespace, listen, dir);
  }
});

afterAll(async () => {
  // Whatever a failed test left running goes before the namespaces do.
  for (const env of jobs) await net.hyper(env, 'down', '--time', '0');
  for (const env of jobs) expect(await qemuProcessesUnder(env.HYPER_STATE_DIR ?? '')).toEqual([]);
  await net.remove();
  await rm(work, { recursive: true, force: true });
});

const jobs: Record<string, string>[] = [];

function job(name: string): Record<string, string> {
  const env = {
    HYPER_STATE_DIR: path.join(work, `state-${name}`),
    HYPER_CACHE_DIR: process.env.HYPER_CACHE_DIR ?? '',
  };
  jobs.push(env);
  return env;
}

async function ok(env: Record<string, string>, ...args: string[]) {
  const result = await net.hyper(env, ...args);
  if (result.exitCode !== 0)
    throw new Error(`hyper ${args.join(' ')} exited ${result.exitCode}:\n${result.stderr}`);
  return result;
}

/** What a guest's `wget http://TARGET/` gives: the page, or "unreachable". */
async function fetchFrom(env: Record<string, string>, service: string, target: string): Promise<string> {
  const result = await net.hyper(
    env,
    'exec',
    service,
    '--',
    // busybox's own timeout: the wget -T of Debian's busybox 1.35 crashes.
    'timeout',
    '5',
    'wget',
    '-q',
    '-O',
    '-',
    `http://${target}/`,
  );
  return result.exitCode === 0 ? String(result.stdout).trim() : 'unreachable';
}

async function compose(name: string, text: string): Promise<string> {
  const file = path.join(work, `${name}.yml`);
  await writeFile(file, text);
  return file;
}

const TWO_SERVICES = (image: string) => `services:
  db:
    image: ${image}
    ports: ["80"]
    networks:
      default:
        aliases: [database]
  app:
    image: ${image}
`;

async function noVms(env: Record<string, string>): Promise<string[]> {
  return readdir(path.join(env.HYPER_STATE_DIR ?? '', 'vms')).catch(() => []);
}

describe('bridge mode', () => {
  const a = job('a');
  const b = job('b');

  test('by name and alias; egress deny with an allow-list; never the host or the metadata address', async () => {
    const file = await compose('a', TWO_SERVICES(image));
    const up = await ok(
      a,
      'up',
      '-f',
      file,
      '--network',
      'bridge',
      '--egress',
      'deny',
      '--egress-allow',
      '192.0.2.1',
    );
    expect(up.stderr).toMatch(
      /network: bridge hy[0-9a-f]{8} on 10\.213\.\d+\.0\/24 \(as root, nft, egress deny except 192\.0\.2\.1\)/,
    );
    const ps = JSON.parse(String((await ok(a, 'ps', '--json')).stdout)) as {
      name: string;
      ports: { hostPort: number }[];
    }[];
    const dbPort = ps.find((s) => s.name === 'db')?.ports[0]?.hostPort;

    expect(await fetchFrom(a, 'app', 'db')).toBe(PAGE);
    expect(await fetchFrom(a, 'app', 'database:80')).toBe(PAGE);
    // The host step, on the runner's loopback, reaches the published port.
    const fromHost = await net.exec('curl', ['-s', '-m', '3', `http://127.0.0.1:${dbPort}/`]);
    expect(String(fromHost.stdout).trim()).toBe(PAGE);

    expect(await fetchFrom(a, 'app', '192.0.2.1:8000')).toBe('internet');
    expect(await fetchFrom(a, 'app', '198.51.100.1:8000')).toBe('unreachable');
    expect(await fetchFrom(a, 'app', '169.254.169.254')).toBe('unreachable');
    // The runner host's own service, by its uplink address and by the bridge's gateway.
    const gateway = (
      await net.hyper(
        a,
        'exec',
        'app',
        '--',
        'sh',
        '-c',
        "ip route | sed -n 's/^default via \\([^ ]*\\).*/\\1/p'",
      )
    ).stdout;
    expect(String(gateway).trim()).toMatch(/^10\.213\.\d+\.1$/);
    expect(await fetchFrom(a, 'app', '192.0.2.2:9000')).toBe('unreachable');
    expect(await fetchFrom(a, 'app', `${String(gateway).trim()}:9000`)).toBe('unreachable');
    // The host itself does reach that service: the block is the guest's.
    expect(String((await net.exec('curl', ['-s', '-m', '3', 'http://192.0.2.2:9000/'])).stdout).trim()).toBe(
      'host service',
    );
  });

  test("each member's QEMU is in a network namespace of its own, with no address (IPv4 or IPv6): it reaches nothing of the host", async () => {
    const ps = JSON.parse(String((await ok(a, 'ps', '--json')).stdout)) as {
      name: string;
      pid: number;
      ports: { hostPort: number }[];
    }[];
    const app = ps.find((s) => s.name === 'app');
    const dbPort = ps.find((s) => s.name === 'db')?.ports[0]?.hostPort;
    const own = (await stat(`/proc/${app?.pid}/ns/net`)).ino;
    expect(own).not.toBe((await stat(`/run/netns/${net.ns}`)).ino);
    expect(own).not.toBe((await stat(`/proc/${ps.find((s) => s.name === 'db')?.pid}/ns/net`)).ino);
    const inQemu = (program: string, ...args: string[]) =>
      execa('nsenter', [`--net=/proc/${app?.pid}/ns/net`, program, ...args], { reject: false });
    // Its TAP, the bridge inside and the veth end out to the job's bridge: no address on any of them.
    const links = String((await inQemu('ip', '-o', 'link', 'show')).stdout)
      .split('\n')
      .map((line) => line.split(': ')[1]?.split('@')[0] ?? '')
      .sort();
    expect(links).toEqual(['br0', 'eth0', 'lo', 'tap0']);
    expect(String((await inQemu('ip', '-o', '-4', 'addr', 'show')).stdout)).toBe('');
    expect(String((await inQemu('ip', '-4', 'route', 'show')).stdout)).toBe('');
    // The runner host's service, the published port and the outside: all out of reach from QEMU's side.
    expect(String((await inQemu('ip', '-o', '-6', 'addr', 'show')).stdout)).toBe('');
    expect(String((await inQemu('ip', '-6', 'route', 'show')).stdout)).toBe('');
    for (const url of ['http://192.0.2.2:9000/', `http://127.0.0.1:${dbPort}/`, 'http://192.0.2.1:8000/'])
      expect((await inQemu('curl', '-s', '-m', '2', url)).exitCode).toBeGreaterThan(0);
    // While the guest behind it still reaches what its job allows.
    expect(await fetchFrom(a, 'app', 'db')).toBe(PAGE);
  });

  test('a second job gets its own bridge and subnet; egress allow still never reaches metadata or the first job', async () => {
    const run = await ok(b, 'run', '--name', 'web', '--network', 'bridge', '-p', '80', image);
    expect(run.stderr).toMatch(
      /network: bridge hy[0-9a-f]{8} on 10\.213\.\d+\.0\/24 \(as root, nft, egress allow\)/,
    );
    const hostsA = String((await ok(a, 'exec', 'db', '--', 'cat', '/etc/hosts')).stdout);
    const hostsB = String((await ok(b, 'exec', 'web', '--', 'cat', '/etc/hosts')).stdout);
    const addressA = /^(\S+)\tdb database$/m.exec(hostsA)?.[1] ?? '';
    const addressB = /^(\S+)\tweb$/m.exec(hostsB)?.[1] ?? '';
    expect(addressA).toMatch(/^10\.213\.\d+\.\d+$/);
    expect(addressB).toMatch(/^10\.213\.\d+\.\d+$/);
    expect(addressA.split('.').slice(0, 3)).not.toEqual(addressB.split('.').slice(0, 3));

    expect(await fetchFrom(b, 'web', '192.0.2.1:8000')).toBe('internet');
    expect(await fetchFrom(b, 'web', '198.51.100.1:8000')).toBe('elsewhere');
    expect(await fetchFrom(b, 'web', '169.254.169.254')).toBe('unreachable');
    expect(await fetchFrom(b, 'web', '192.0.2.2:9000')).toBe('unreachable');
    expect(await fetchFrom(b, 'web', addressA)).toBe('unreachable');
    expect(await fetchFrom(a, 'app', addressB)).toBe('unreachable');
  });

  test("a checkpoint of a bridge member restores on its own TAP and address; the capture machine's TAP is gone", async () => {
    const address = /^(\S+)\tweb$/m.exec(
      String((await ok(b, 'exec', 'web', '--', 'cat', '/etc/hosts')).stdout),
    )?.[1];
    await ok(b, 'snapshot', '--checkpoint', 'web', 'cp');
    const links = async () => String((await net.exec('ip', ['-o', 'link', 'show'])).stdout);
    // The capture machine's TAP (QEMU's own, tapN) went with it.
    expect(await links()).not.toMatch(/^\d+: tap\d+/m);
    await ok(b, 'exec', 'web', '--', 'rm', '/www/index.html');
    await ok(b, 'restore', 'web', 'cp');
    const ps = JSON.parse(String((await ok(b, 'ps', '--json')).stdout)) as {
      ports: { hostPort: number }[];
    }[];
    const fromHost = await net.exec('curl', [
      '-s',
      '-m',
      '3',
      `http://127.0.0.1:${ps[0]?.ports[0]?.hostPort}/`,
    ]);
    expect(String(fromHost.stdout).trim()).toBe(PAGE);
    expect(await fetchFrom(b, 'web', '192.0.2.1:8000')).toBe('internet');
    expect(await fetchFrom(a, 'app', String(address))).toBe('unreachable');
    await ok(b, 'snapshot', 'rm', 'web', 'cp');
  });

  test('tearing one job down leaves the other serving; then nothing of either is left', async () => {
    const before = await net.leftovers();
    expect(before.links.length).toBe(2 + 3); // two bridges, three members' veth ends
    expect(before.namespaces.length).toBe(3); // one per member, its TAP inside
    expect(before.tables.length).toBe(2);
    await ok(a, 'down', '--time', '0');
    const ps = JSON.parse(String((await ok(b, 'ps', '--json')).stdout)) as {
      ports: { hostPort: number }[];
    }[];
    const port = ps[0]?.ports[0]?.hostPort;
    const fromHost = await net.exec('curl', ['-s', '-m', '3', `http://127.0.0.1:${port}/`]);
    expect(String(fromHost.stdout).trim()).toBe(PAGE);
    const middle = await net.leftovers();
    expect(middle.links.length).toBe(2);
    expect(middle.namespaces.length).toBe(1);
    expect(middle.tables.length).toBe(1);

    await ok(b, 'rm', '-f', 'web');
    expect(await net.leftovers()).toEqual({ links: [], tables: [], chains: [], namespaces: [] });
    expect(await noVms(a)).toEqual([]);
    expect(await noVms(b)).toEqual([]);
    expect(await readdir(a.HYPER_STATE_DIR ?? '')).not.toContain('network.json');
  });

  test('a stopped member whose network namespace is gone: start says so and starts nothing; rm leaves nothing', async () => {
    const g = job('g');
    await ok(g, 'run', '--name', 'web', '--network', 'bridge', image);
    const record = JSON.parse(await readFile(path.join(g.HYPER_STATE_DIR ?? '', 'network.json'), 'utf8')) as {
      members: { netns?: string }[];
    };
    const name = record.members[0]?.netns;
    expect(name).toMatch(/^hy[0-9a-f]{8}t0$/);
    await ok(g, 'stop', 'web');
    // What a reboot leaves, or a hyper in another mount namespace sees: the name without the namespace.
    await execa('umount', [`/run/netns/${name}`]);
    const start = await net.hyper(g, 'start', 'web');
    expect(start.exitCode).not.toBe(0);
    expect(String(start.stderr)).toContain(
      `cannot start web: its network namespace /run/netns/${name} is gone (a reboot, or a hyper in another mount namespace made it); remove the VM and run it again`,
    );
    expect(await qemuProcessesUnder(g.HYPER_STATE_DIR ?? '')).toEqual([]);
    await ok(g, 'rm', '-f', 'web');
    expect(await net.leftovers()).toEqual({ links: [], tables: [], chains: [], namespaces: [] });
  });

  test('iptables where nft is missing: same policy, removed at teardown', async () => {
    const c = { ...job('c'), HYPER_FIREWALL: 'iptables' };
    const file = await compose('c', TWO_SERVICES(image));
    const up = await ok(c, 'up', '-f', file, '--network', 'bridge', '--egress', 'deny');
    expect(up.stderr).toContain('(as root, iptables, egress deny)');
    expect(await fetchFrom(c, 'app', 'database')).toBe(PAGE);
    expect(await fetchFrom(c, 'app', '192.0.2.1:8000')).toBe('unreachable');
    expect(await fetchFrom(c, 'app', '192.0.2.2:9000')).toBe('unreachable');
    expect((await net.leftovers()).chains.length).toBeGreaterThan(0);
    await ok(c, 'down', '--time', '0');
    expect(await net.leftovers()).toEqual({ links: [], tables: [], chains: [], namespaces: [] });
  });

  test('where iptables drops forwarded traffic (Docker hosts), the rules go into iptables and guests still get out', async () => {
    await net.exec('iptables', ['-P', 'FORWARD', 'DROP']);
    try {
      const d = job('docker-host');
      const run = await ok(d, 'run', '--name', 'web', '--network', 'bridge', image);
      expect(run.stderr).toContain(
        'network: iptables FORWARD policy is DROP here (as Docker sets it), so the rules go into iptables',
      );
      expect(run.stderr).toContain('(as root, iptables, egress allow)');
      expect(await fetchFrom(d, 'web', '192.0.2.1:8000')).toBe('internet');
      expect(await fetchFrom(d, 'web', '169.254.169.254')).toBe('unreachable');
      await ok(d, 'rm', '-f', 'web');
      expect(await net.leftovers()).toEqual({ links: [], tables: [], chains: [], namespaces: [] });
    } finally {
      await net.exec('iptables', ['-P', 'FORWARD', 'ACCEPT']);
    }
  });
});

describe('user mode', () => {
  test('by name and alias over loopback; egress deny reaches neither the host nor metadata; down leaves nothing', async () => {
    const u = job('u');
    const file = await compose('u', TWO_SERVICES(image));
    const up = await ok(u, 'up', '-f', file, '--network', 'user', '--egress', 'deny');
    expect(up.stderr).toContain('network: user (QEMU user networking)');
    expect(await fetchFrom(u, 'app', 'db')).toBe(PAGE);
    expect(await fetchFrom(u, 'app', 'database:80')).toBe(PAGE);
    // 10.0.2.2 is the host's loopback in QEMU user networking: closed with egress deny.
    const loopback = path.join(work, 'www-loopback');
    await mkdir(loopback);
    await writeFile(path.join(loopback, 'index.html'), 'host loopback\n');
    await net.serve(net.ns, '127.0.0.1:9001', loopback);
    expect(await fetchFrom(u, 'app', '10.0.2.2:9001')).toBe('unreachable');
    expect(await fetchFrom(u, 'app', '169.254.169.254')).toBe('unreachable');
    expect(await fetchFrom(u, 'app', '192.0.2.1:8000')).toBe('unreachable');
    await ok(u, 'down', '--time', '0');
    expect(await noVms(u)).toEqual([]);
    expect(await readdir(u.HYPER_STATE_DIR ?? '')).not.toContain('network.json');
    expect(await net.leftovers()).toEqual({ links: [], tables: [], chains: [], namespaces: [] });
  });
});

describe('bad input leaves no half-built network', () => {
  test('bridge without root or sudo', async () => {
    const n = job('nobody');
    await mkdir(n.HYPER_STATE_DIR ?? '', { recursive: true });
    await execa('chown', ['65534:65534', n.HYPER_STATE_DIR ?? '']);
    const result = await net.exec('setpriv', [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      'env',
      `HYPER_STATE_DIR=${n.HYPER_STATE_DIR}`,
      `HYPER_CACHE_DIR=${path.join(work, 'nobody-cache')}`,
      'HYPER_ACCEL=tcg',
      'PATH=/usr/sbin:/usr/bin:/sbin:/bin',
      process.execPath,
      path.resolve('dist/cli/index.js'),
      'run',
      '--network',
      'bridge',
      image,
    ]);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toMatch(
      /hyper run: network bridge needs root or passwordless sudo: not running as root, and sudo (asks for a password|is not installed)\. Use network user \(or auto\) to run rootless/,
    );
    expect(await readdir(n.HYPER_STATE_DIR ?? '')).toEqual([]);
    expect(await net.leftovers()).toEqual({ links: [], tables: [], chains: [], namespaces: [] });
  });

  test('a subnet that overlaps an interface', async () => {
    await net.exec('ip', ['link', 'add', 'clash0', 'type', 'veth', 'peer', 'name', 'clash1']);
    await net.exec('ip', ['addr', 'add', '10.77.0.1/16', 'dev', 'clash0']);
    const s = job('subnet');
    const result = await net.hyper(s, 'run', '--network', 'bridge', '--subnet', '10.77.1.0/24', image);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain(
      'hyper run: subnet 10.77.1.0/24 overlaps 10.77.0.1/16 on clash0; choose a subnet that no interface or route on this host uses',
    );
    expect(await noVms(s)).toEqual([]);
    expect(await readdir(s.HYPER_STATE_DIR ?? '').catch(() => [])).not.toContain('network.json');
    expect(await net.leftovers()).toEqual({ links: [], tables: [], chains: [], namespaces: [] });
  });

  test('an alias given twice', async () => {
    const d = job('dup');
    const file = await compose(
      'dup',
      `services:\n  a:\n    image: ${image}\n    networks: { default: { aliases: [cache] } }\n  b:\n    image: ${image}\n    networks: { default: { aliases: [cache] } }\n`,
    );
    const result = await net.hyper(d, 'up', '-f', file, '--network', 'bridge');
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain(
      'alias "cache" is given twice, by services "a" and "b"; a name on the network belongs to one service',
    );
    expect(await noVms(d)).toEqual([]);
    expect(await net.leftovers()).toEqual({ links: [], tables: [], chains: [], namespaces: [] });
  });
});
