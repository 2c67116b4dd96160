import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { httpGet, hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';
import { busyboxLayout } from '../../support/fixtures.js';
import { MAIN_BUNDLE as MAIN, POST_BUNDLE as POST, RunnerJob } from '../../support/runner.js';
import { expectNothingLeft } from '../../support/runner-expect.js';

// One guest's kernel panic stays in that guest: the other service keeps
// answering, `hyper ps` and the job summary say which one crashed and why
// (from its console), and teardown still removes everything.
let image: string;
const restoreEnv = snapshotEnv();

beforeAll(async () => {
  image = `oci:${await busyboxLayout()}`;
  process.env.HYPER_ACCEL = 'tcg';
});

afterEach(() => {
  restoreEnv();
  process.env.HYPER_ACCEL = 'tcg';
});

interface PsRow {
  name: string;
  state: string;
  exitCode: number | null;
  crash: string | null;
  consoleTail: string | null;
  ports: { hostPort: number }[];
}

async function ps(): Promise<PsRow[]> {
  return JSON.parse((await hyperOk('ps', '--json')).stdout) as PsRow[];
}

/** Panics the guest kernel of `name` (sysrq crash), then waits for its VM to be gone. */
async function panic(name: string): Promise<void> {
  const result = await hyper('exec', name, '--', 'sh', '-c', 'echo c > /proc/sysrq-trigger');
  // The guest dies under the command: hyper exec says so.
  expect(result.code).toBe(125);
  expect(result.stderr).toBe(
    `hyper exec: "${name}" stopped while the command ran (kernel panic: sysrq triggered crash)\n`,
  );
  const deadline = Date.now() + 60_000;
  for (;;) {
    const row = (await ps()).find((r) => r.name === name);
    if (row?.state === 'exited') return;
    if (Date.now() > deadline) throw new Error(`${name} still ${row?.state} a minute after the panic`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function expectCrashReported(name: string, survivor: string): Promise<void> {
  const rows = await ps();
  const crashed = rows.find((r) => r.name === name);
  expect(crashed).toMatchObject({
    state: 'exited',
    exitCode: null,
    crash: 'kernel panic: sysrq triggered crash',
  });
  expect(crashed?.consoleTail).toContain('Kernel panic - not syncing: sysrq triggered crash');
  expect(rows.find((r) => r.name === survivor)?.state).toBe('running');
  const text = (await hyperOk('ps')).stdout;
  expect(text).toMatch(new RegExp(`^${name}\\s+\\S+\\s+exited \\(kernel panic\\)`, 'm'));
  expect(text).toMatch(new RegExp(`^${survivor}\\s+\\S+\\s+running`, 'm'));
  expect(text).toContain(`\n${name}: kernel panic: sysrq triggered crash; the end of its console:\n`);
  expect(text).toMatch(/^ {2}.*Kernel panic - not syncing: sysrq triggered crash/m);
}

test('the action: a panic in one service leaves the other answering; ps and the summary show it; post tears down', async () => {
  const job = await RunnerJob.create();
  try {
    const services = `one:\n  image: ${image}\n  ports: ['80']\ntwo:\n  image: ${image}\n  ports: ['80']\n`;
    const main = await job.step(MAIN, { services, accel: 'tcg' });
    expect(main.stdout).not.toContain('::error::');
    expect(main.exitCode).toBe(0);
    const env = await job.env();
    process.env.HYPER_STATE_DIR = env.HYPER_STATE_DIR;
    const twoUrl = `http://127.0.0.1:${env.HYPER_TWO_PORT_80}/`;
    expect(await httpGet(twoUrl)).toContain('hello');

    await panic('one');
    expect(await httpGet(twoUrl)).toContain('hello');
    await expectCrashReported('one', 'two');

    const post = await job.step(POST, {});
    expect(post.exitCode).toBe(0);
    expect(post.stdout).toContain('::warning::one: the guest crashed (kernel panic: sysrq triggered crash)');
    expect(post.stdout).toContain('::group::Console of one');
    const summary = await readFile(job.file('summary'), 'utf8');
    expect(summary).toContain('<td>one</td><td>exited (kernel panic)</td><td>-</td>');
    expect(summary).toMatch(/<td>two<\/td><td>running<\/td><td>[\d.]+<\/td>/);
    await expectNothingLeft(job);
  } finally {
    await job.remove();
  }
});

test('hyper up: a panic in one service leaves the other answering; hyper down -f FILE removes both, and only them', async () => {
  const stateDir = await mkdtemp('/tmp/hyper-it-');
  const work = await mkdtemp('/tmp/hyper-compose-');
  process.env.HYPER_STATE_DIR = stateDir;
  try {
    const compose = path.join(work, 'compose.yml');
    await writeFile(
      compose,
      `services:\n  left:\n    image: ${image}\n    ports: ["80"]\n  right:\n    image: ${image}\n    ports: ["80"]\n`,
    );
    await hyperOk('up', '-f', compose, '--wait-timeout', '120');
    const right = (await ps()).find((r) => r.name === 'right');
    const rightUrl = `http://127.0.0.1:${right?.ports[0]?.hostPort}/`;

    await panic('left');
    expect(await httpGet(rightUrl)).toContain('hello');
    await expectCrashReported('left', 'right');

    // As docker compose -f FILE down: only what up -f FILE made goes; another VM of the job stays.
    await hyperOk('run', '--name', 'other', image);
    const down = await hyperOk('down', '-f', compose);
    expect(down.stderr).toMatch(/^left: stopped \(exit code unknown\) and removed$/m);
    expect(down.stderr).toMatch(/^right: stopped \(exit code \d+\) and removed$/m);
    expect(await readdir(path.join(stateDir, 'vms'))).toEqual(['other']);
    await hyperOk('down');
    expect(await readdir(path.join(stateDir, 'vms'))).toEqual([]);
    expect(await readdir(stateDir)).not.toContain('network.json');
    expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  } finally {
    await hyper('down', '--time', '0');
    await rm(stateDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
});
