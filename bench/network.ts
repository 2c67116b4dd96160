/**
 * Network benchmark: redis (the Debian-built image) in each mode, inside a
 * network namespace this script makes (test/support/netns.ts), so no traffic
 * leaves it. Medians over N runs of:
 *   job network set up (three services: addresses, host ports, for bridge the
 *   bridge, TAPs and nftables rules) and torn down;
 *   redis-benchmark throughput (SET and GET, 20 connections) and latency
 *   (PING on one connection: p50 round trip) from the host to a service's
 *   published port, and from one service to another by name;
 * with the same redis-server as a plain process on the host's loopback as
 * the floor, measured in the same run, and each figure's ratio to it.
 *
 * Needs root (namespaces), redis-server and redis-benchmark on the host.
 * Also: one member's link to the bridge made and removed, the TAP on the
 * bridge (the baseline) against the member's own namespace, alternating.
 *
 * Usage: bench/run-ts network [--runs N] [--requests N] [--setup-only]   (defaults 3, 20000).
 * --setup-only: the set-up and link figures, not the traffic. Prints figures; asserts nothing.
 */
import { execa } from 'execa';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import {
  createBridge,
  createMemberNetns,
  createTap,
  deleteLink,
  deleteMemberNetns,
} from '../src/network/host.js';
import { joinNetwork, removeNetwork, type MemberRequest } from '../src/network/job.js';
import { networkSettings } from '../src/network/settings.js';
import { hyper, hyperOk } from '../test/support/cli.js';
import { serviceImageLayouts } from '../test/support/fixtures.js';
import { TestNetwork } from '../test/support/netns.js';
import { formatRuns, machineLine, median } from './stats.js';

type Mode = 'user' | 'bridge';

interface Figures {
  setRps: number;
  getRps: number;
  pingP50Ms: number;
}

const quiet = { info: () => undefined, warn: () => undefined };

/** redis-benchmark --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",... */
function parseCsv(text: string): Map<string, { rps: number; p50: number }> {
  const rows = new Map<string, { rps: number; p50: number }>();
  for (const line of text.split('\n').slice(1)) {
    const cells = line.split(',').map((cell) => cell.replace(/"/g, ''));
    if (cells.length < 5) continue;
    rows.set(cells[0] ?? '', { rps: Number(cells[1]), p50: Number(cells[4]) });
  }
  return rows;
}

/** One throughput and one latency measurement with `run` (redis-benchmark ARGS -> its stdout). */
async function measure(run: (args: string[]) => Promise<string>, requests: number): Promise<Figures> {
  const throughput = parseCsv(await run(['-n', String(requests), '-c', '20', '-t', 'set,get', '--csv']));
  const latency = parseCsv(
    await run(['-n', String(Math.ceil(requests / 10)), '-c', '1', '-t', 'ping', '--csv']),
  );
  return {
    setRps: throughput.get('SET')?.rps ?? NaN,
    getRps: throughput.get('GET')?.rps ?? NaN,
    pingP50Ms: latency.get('PING_INLINE')?.p50 ?? NaN,
  };
}

function summarize(label: string, runs: Figures[], floor?: Figures[]): string {
  const m = (key: keyof Figures, of: Figures[]) => median(of.map((f) => f[key]));
  const ratio = (key: keyof Figures) =>
    floor ? ` (${(m(key, runs) / m(key, floor)).toFixed(3)}x floor)` : '';
  return [
    `${label}:`,
    `  SET ${Math.round(m('setRps', runs))} req/s${ratio('setRps')}  [${runs.map((f) => Math.round(f.setRps)).join(' ')}]`,
    `  GET ${Math.round(m('getRps', runs))} req/s${ratio('getRps')}  [${runs.map((f) => Math.round(f.getRps)).join(' ')}]`,
    `  PING p50 ${m('pingP50Ms', runs).toFixed(3)} ms${ratio('pingP50Ms')}  [${runs.map((f) => f.pingP50Ms).join(' ')}]`,
  ].join('\n');
}

async function setupTimes(mode: Mode, runs: number): Promise<void> {
  const settings = networkSettings(
    { mode },
    { mode: 'mode', egress: 'egress', allow: 'allow', subnet: 'subnet' },
  );
  const members: MemberRequest[] = ['db', 'cache', 'app'].map((service) => ({
    service,
    aliases: [],
    containerPorts: [5432, 6379],
    published: [{ hostIp: '127.0.0.1', hostPort: 0, containerPort: 80, protocol: 'tcp' }],
  }));
  const setup: number[] = [];
  const teardown: number[] = [];
  for (let i = 0; i < runs; i++) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'hyper-bench-net-'));
    const start = performance.now();
    await joinNetwork(dir, settings, members, quiet);
    const made = performance.now();
    await removeNetwork(dir);
    teardown.push(performance.now() - made);
    setup.push(made - start);
    await rm(dir, { recursive: true, force: true });
  }
  console.log(`${mode}: network set up (3 services) ${formatRuns(setup)}; torn down ${formatRuns(teardown)}`);
}

/**
 * One member's link to a bridge, made and removed: the TAP on the bridge
 * (through sudo, or without CAP_SYS_ADMIN) against the namespace of its own
 * with a veth pair (as root), alternating, on a bridge made for it.
 */
async function memberLinkTimes(runs: number): Promise<void> {
  const bridge = 'hybench0';
  await createBridge({ sudo: false }, bridge, '10.213.250.1/24');
  const times = {
    tap: { make: [] as number[], remove: [] as number[] },
    netns: { make: [] as number[], remove: [] as number[] },
  };
  try {
    for (let i = 0; i < runs; i++) {
      for (const kind of ['tap', 'netns'] as const) {
        const name = `${bridge}t${i}`;
        const start = performance.now();
        if (kind === 'tap') await createTap({ sudo: false }, name, bridge);
        else await createMemberNetns(name, bridge);
        const made = performance.now();
        if (kind === 'tap') await deleteLink({ sudo: false }, name);
        else await deleteMemberNetns(name);
        times[kind].make.push(made - start);
        times[kind].remove.push(performance.now() - made);
      }
    }
  } finally {
    await deleteLink({ sudo: false }, bridge);
  }
  const ratio = (of: number[], base: number[]) => `${(median(of) / median(base)).toFixed(2)}x`;
  console.log(
    `bridge member link, TAP on the bridge (baseline): made ${formatRuns(times.tap.make)}; removed ${formatRuns(times.tap.remove)}`,
  );
  console.log(
    `bridge member link, namespace of its own: made ${formatRuns(times.netns.make)} (${ratio(times.netns.make, times.tap.make)}); removed ${formatRuns(times.netns.remove)} (${ratio(times.netns.remove, times.tap.remove)})`,
  );
}

async function servicesIn(mode: Mode, image: string, runs: number, requests: number) {
  const state = await mkdtemp(path.join(os.tmpdir(), `hyper-bench-${mode}-`));
  process.env.HYPER_STATE_DIR = state;
  const file = path.join(state, 'compose.yml');
  await writeFile(
    file,
    `services:\n  srv:\n    image: ${image}\n    ports: ["6379"]\n  cli:\n    image: ${image}\n`,
  );
  try {
    await hyperOk('up', '-f', file, '--network', mode, '--wait-timeout', '300');
    const ps = JSON.parse((await hyperOk('ps', '--json')).stdout) as {
      name: string;
      ports: { hostPort: number }[];
    }[];
    const port = String(ps.find((s) => s.name === 'srv')?.ports[0]?.hostPort);
    const fromHost: Figures[] = [];
    const between: Figures[] = [];
    for (let i = 0; i < runs; i++) {
      fromHost.push(
        await measure(
          async (args) => (await execa('redis-benchmark', ['-h', '127.0.0.1', '-p', port, ...args])).stdout,
          requests,
        ),
      );
      between.push(
        await measure(
          async (args) =>
            (await hyperOk('exec', 'cli', '--', 'redis-benchmark', '-h', 'srv', '-p', '6379', ...args))
              .stdout,
          requests,
        ),
      );
    }
    return { fromHost, between };
  } finally {
    await hyper('down', '--time', '0');
    await rm(state, { recursive: true, force: true });
  }
}

async function inside(runs: number, requests: number, setupOnly: boolean): Promise<void> {
  console.log(
    `machine: ${machineLine()}; ${runs} runs, ${requests} requests each; accelerator ${process.env.HYPER_ACCEL ?? 'auto'}`,
  );
  for (const mode of ['user', 'bridge'] as const) await setupTimes(mode, runs);
  await memberLinkTimes(Math.max(runs, 5));
  if (setupOnly) return;

  const port = '16379';
  const server = execa(
    'redis-server',
    ['--bind', '127.0.0.1', '--port', port, '--save', '', '--appendonly', 'no'],
    {
      reject: false,
    },
  );
  const floor: Figures[] = [];
  try {
    for (let i = 0; i < 50; i++) {
      if ((await execa('redis-cli', ['-p', port, 'ping'], { reject: false })).stdout === 'PONG') break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // redis-benchmark retries a port nothing listens on without end.
    if ((await execa('redis-cli', ['-p', port, 'ping'], { reject: false })).stdout !== 'PONG')
      throw new Error(
        `redis-server did not answer on 127.0.0.1:${port} (is it installed? apt-get install redis-server)`,
      );
    for (let i = 0; i < runs; i++) {
      floor.push(
        await measure(
          async (args) => (await execa('redis-benchmark', ['-h', '127.0.0.1', '-p', port, ...args])).stdout,
          requests,
        ),
      );
    }
  } finally {
    server.kill('SIGTERM');
    await server;
  }
  console.log(summarize('floor: host redis-benchmark -> host redis-server on loopback', floor));

  const { redis } = await serviceImageLayouts();
  for (const mode of ['user', 'bridge'] as const) {
    const result = await servicesIn(mode, `oci:${redis}`, runs, requests);
    console.log(summarize(`${mode}: host -> service (published port on loopback)`, result.fromHost, floor));
    console.log(summarize(`${mode}: service -> service (by name)`, result.between, floor));
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const option = (name: string, fallback: number) => {
    const at = args.indexOf(name);
    return at === -1 ? fallback : Number(args[at + 1]);
  };
  const runs = option('--runs', 3);
  const requests = option('--requests', 20000);
  if (args.includes('--inside')) {
    await inside(runs, requests, args.includes('--setup-only'));
    return;
  }
  // Everything happens in a namespace of our own: bridges, rules and traffic stay in it.
  const net = await TestNetwork.create();
  try {
    await execa(
      'ip',
      ['netns', 'exec', net.ns, process.execPath, fileURLToPath(import.meta.url), '--inside', ...args],
      { stdio: 'inherit', env: { HYPER_ACCEL: process.env.HYPER_ACCEL ?? 'tcg' } },
    );
  } finally {
    await net.remove();
  }
}

await main();
