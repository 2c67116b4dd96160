import { readdir, readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { hyper, qemuProcessesUnder, type CliResult } from '../../support/cli.js';
import { busyboxLayout } from '../../support/fixtures.js';
import { snapshotEnv } from '../../support/env.js';
import { freePort } from '../../support/registry/registry.js';
import { TestNetwork } from '../../support/netns.js';

// Three replicas of an HTTP service behind one host port, in both network
// modes: real VMs, real QEMU, hyper's forwarder (user mode, clients on this
// host's loopback) or the real packet filter (bridge mode, run with its
// clients inside a network namespace this test makes, test/support/netns.ts).
let stateDir: string;
let bridgeStateDir: string;
let work: string;
let net: TestNetwork;
const restoreEnv = snapshotEnv();

beforeAll(async () => {
  stateDir = await mkdtemp('/tmp/hyper-it-');
  bridgeStateDir = await mkdtemp('/tmp/hyper-it-');
  work = await mkdtemp('/tmp/hyper-replicas-');
  process.env.HYPER_STATE_DIR = stateDir;
  process.env.HYPER_ACCEL = 'tcg';
  net = await TestNetwork.create();
});

afterAll(async () => {
  await hyper('down', '--time', '0');
  await net.hyper({ HYPER_STATE_DIR: bridgeStateDir }, 'down', '--time', '0');
  for (const dir of [stateDir, bridgeStateDir]) {
    expect(await qemuProcessesUnder(dir)).toEqual([]);
    expect(await balancersUnder(dir)).toEqual([]);
  }
  expect(await net.leftovers()).toEqual({ links: [], tables: [], chains: [], namespaces: [] });
  await net.remove();
  for (const dir of [stateDir, bridgeStateDir, work]) await rm(dir, { recursive: true, force: true });
  restoreEnv();
});

/** How a test drives one job: its hyper, and an HTTP GET from where its clients are. */
interface Door {
  stateDir: string;
  hyper(...args: string[]): Promise<CliResult>;
  /** One GET on a new connection: the body, "refused", or what else went wrong. */
  get(port: number): Promise<string>;
}

const userDoor = (): Door => ({ stateDir, hyper, get });

/** Bridge mode inside the namespace: the CLI bundle and curl run there. */
const bridgeDoor = (): Door => ({
  stateDir: bridgeStateDir,
  async hyper(...args) {
    const result = await net.hyper({ HYPER_STATE_DIR: bridgeStateDir }, ...args);
    return { code: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
  },
  async get(port) {
    const result = await net.exec('curl', [
      '-s',
      '-m',
      '10',
      '-w',
      '\n%{http_code}',
      `http://127.0.0.1:${port}/`,
    ]);
    if (result.exitCode === 7) return 'refused';
    // The status code is the last line; the body (with its own newline) comes before it.
    const output = String(result.stdout);
    const code = output.slice(output.lastIndexOf('\n') + 1);
    const body = output.slice(0, output.lastIndexOf('\n'));
    return result.exitCode === 0 && code === '200' ? body.trim() : `failed: curl ${result.exitCode} ${code}`;
  },
});

async function ok(door: Door, ...args: string[]): Promise<CliResult> {
  const result = await door.hyper(...args);
  if (result.code !== 0) throw new Error(`hyper ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
  return result;
}

/** Pids of live balancer processes of the job in `stateDir`. */
async function balancersUnder(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const args = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (args.includes('balance') && args.includes(dir)) pids.push(Number(entry));
  }
  return pids;
}

/** One GET on a new connection from this host's loopback. */
function get(port: number): Promise<string> {
  return new Promise((resolve) => {
    const request = http.get(
      { host: '127.0.0.1', port, path: '/', agent: false, timeout: 10_000 },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', () =>
          resolve(response.statusCode === 200 ? body.trim() : `HTTP ${response.statusCode}`),
        );
      },
    );
    request.on('timeout', () => request.destroy(new Error('timed out')));
    request.on('error', (error) =>
      resolve(
        (error as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? 'refused' : `failed: ${error.message}`,
      ),
    );
  });
}

/** `count` requests one after another, as the hostnames that answered, counted. */
async function spread(door: Door, port: number, count: number): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const answer = await door.get(port);
    seen[answer] = (seen[answer] ?? 0) + 1;
  }
  return seen;
}

interface PsRow {
  name: string;
  state: string;
  pid: number | null;
  replicaOf: string | null;
  outOfRotation: string | null;
}

async function psRows(door: Door): Promise<PsRow[]> {
  return JSON.parse((await ok(door, 'ps', '--json')).stdout) as PsRow[];
}

/** Waits until the balancer has `name` out of rotation for `reason`, or back in (null). */
async function waitRotation(door: Door, name: string, reason: string | null): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const row = (await psRows(door)).find((r) => r.name === name);
    if (row?.outOfRotation === reason) return;
    if (Date.now() > deadline)
      throw new Error(
        `${name} is not ${reason ? `out of rotation (${reason})` : 'in rotation'}: ${JSON.stringify(row)}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test.each(['user', 'bridge'] as const)(
  '%s networking: 3 replicas share one host port, a killed or unhealthy one leaves the rotation',
  async (mode) => {
    const door = mode === 'user' ? userDoor() : bridgeDoor();
    const port = await freePort();
    const compose = path.join(work, `${mode}.yml`);
    await writeFile(
      compose,
      `services:
  web:
    image: oci:${await busyboxLayout()}
    entrypoint:
      - sh
      - -c
      - "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"
    ports: ["${port}:80"]
    healthcheck:
      test: ["CMD-SHELL", "test ! -e /tmp/sick && wget -qO- http://127.0.0.1/ >/dev/null"]
      interval: 1s
      retries: 2
    deploy:
      replicas: 3
`,
    );
    const up = await ok(door, 'up', '-f', compose, '--network', mode);
    expect(up.stderr).toContain('web: balancer (pid ');
    expect((await psRows(door)).map((r) => [r.name, r.state, r.replicaOf, r.outOfRotation])).toEqual([
      ['web.1', 'running', 'web', null],
      ['web.2', 'running', 'web', null],
      ['web.3', 'running', 'web', null],
    ]);

    // 30 connections reach all three, each answering with its own hostname.
    const first = await spread(door, port, 30);
    expect(Object.keys(first).sort()).toEqual(['web.1', 'web.2', 'web.3']);
    // The service name resolves to every replica for its peers.
    const hosts = (await ok(door, 'exec', 'web.1', '--', 'grep', '-w', 'web', '/etc/hosts')).stdout;
    expect(
      hosts
        .trim()
        .split('\n')
        .map((line) => line.split(/\s+/)[1]),
    ).toEqual(['web.1', 'web.2', 'web.3']);

    // Kill one replica's VM outright: once the balancer has seen it, every request is served by the other two.
    const victim = (await psRows(door)).find((r) => r.name === 'web.2')?.pid;
    expect(victim).toEqual(expect.any(Number));
    process.kill(victim as number, 'SIGKILL');
    await waitRotation(door, 'web.2', 'its VM is not running');
    const afterKill = await spread(door, port, 30);
    expect(Object.keys(afterKill).sort()).toEqual(['web.1', 'web.3']);

    // A replica that fails its healthcheck leaves the rotation, and comes back once it passes again.
    await ok(door, 'exec', 'web.3', '--', 'touch', '/tmp/sick');
    await waitRotation(door, 'web.3', 'it is unhealthy');
    expect(await spread(door, port, 10)).toEqual({ 'web.1': 10 });
    expect((await ok(door, 'ps')).stdout).toMatch(/web\.3 .* running, out of rotation \(it is unhealthy\)/);
    await ok(door, 'exec', 'web.3', '--', 'rm', '/tmp/sick');
    await waitRotation(door, 'web.3', null);
    expect(Object.keys(await spread(door, port, 10)).sort()).toEqual(['web.1', 'web.3']);

    // A replica started again is back once it is healthy.
    await ok(door, 'start', 'web.2');
    await waitRotation(door, 'web.2', null);
    expect(Object.keys(await spread(door, port, 30)).sort()).toEqual(['web.1', 'web.2', 'web.3']);

    const down = await ok(door, 'down', '--time', '0');
    expect(down.stderr).toContain('web.3: stopped');
    expect(await balancersUnder(door.stateDir)).toEqual([]);
    expect(await readdir(door.stateDir)).not.toContain('balancers');
    expect(await door.get(port)).toBe('refused');
    if (mode === 'bridge')
      expect(await net.leftovers()).toEqual({ links: [], tables: [], chains: [], namespaces: [] });
  },
);

test('bad replica counts and ports stop up before anything boots', async () => {
  const image = `oci:${await busyboxLayout()}`;
  const cases: [string, string[], string][] = [
    [
      `services:\n  web:\n    image: ${image}\n    container_name: front\n    deploy:\n      replicas: 2\n`,
      [],
      'services.web.container_name (line 4): container_name "front" names one container, and web has 2 replicas; remove container_name or the replicas',
    ],
    [
      `services:\n  web:\n    image: ${image}\n    deploy:\n      replicas: -1\n`,
      [],
      'services.web.deploy.replicas (line 5): "-1" is not a number of replicas: give a whole number of at least 1',
    ],
    [
      `services:\n  web:\n    image: ${image}\n    ports: ["18431:80"]\n    deploy:\n      replicas: 2\n  api:\n    image: ${image}\n    ports: ["18431:81"]\n`,
      [],
      'services "web" and "api" both publish host port 18431/tcp',
    ],
    [
      `services:\n  web:\n    image: ${image}\n`,
      ['--scale', 'web=0'],
      '--scale: "0" is not a number of replicas',
    ],
    [
      `services:\n  web:\n    image: ${image}\n    container_name: front\n`,
      ['--scale', 'web=3'],
      'service "web": container_name "front" names one container, and it has 3 replicas',
    ],
  ];
  for (const [text, flags, message] of cases) {
    const compose = path.join(work, 'bad.yml');
    await writeFile(compose, text);
    for (const command of ['up', 'config']) {
      const result = await hyper(command, '-f', compose, ...flags);
      expect({ command, code: result.code, stderr: result.stderr }).toEqual({
        command,
        code: 125,
        stderr: expect.stringContaining(message) as unknown,
      });
    }
  }
  expect(await readdir(path.join(stateDir, 'vms')).catch(() => [])).toEqual([]);
  expect(await balancersUnder(stateDir)).toEqual([]);
});
