import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { httpGet, hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';
import { busyboxLayout } from '../../support/fixtures.js';
import { snapshotEnv } from '../../support/env.js';

// `hyper up -f compose.yml` and `hyper down` from a terminal, with real VMs.
let stateDir: string;
let work: string;
const restoreEnv = snapshotEnv();

beforeAll(async () => {
  stateDir = await mkdtemp('/tmp/hyper-it-');
  work = await mkdtemp('/tmp/hyper-compose-');
  process.env.HYPER_STATE_DIR = stateDir;
  process.env.HYPER_ACCEL = 'tcg';
});

afterAll(async () => {
  await hyper('down', '--time', '0');
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  await rm(stateDir, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
  restoreEnv();
});

test('a compose file with depends_on: service_healthy boots the dependency first; down removes everything', async () => {
  const image = `oci:${await busyboxLayout()}`;
  await writeFile(path.join(work, 'app.env'), '# the app\nGREETING="hello there"\n');
  const compose = path.join(work, 'compose.yml');
  await writeFile(
    compose,
    `services:
  db:
    image: ${image}
    ports: ["80"]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:80/"]
      interval: 1s
  app:
    image: ${image}
    env_file: app.env
    environment:
      ROLE: app
    ports: ["80"]
    depends_on:
      db:
        condition: service_healthy
`,
  );
  const up = await hyperOk('up', '-f', compose, '--wait-timeout', '120');
  expect(up.stdout).toMatch(/^SERVICE\s+IMAGE\s+PORTS\s+BOOT\s+HEALTHY\s+FROM\n/);
  const lines = up.stderr.split('\n');
  expect(lines.findIndex((l) => l.startsWith('db: healthy after'))).toBeLessThan(
    lines.findIndex((l) => l.startsWith('app: VM running')),
  );
  const env = await hyperOk('exec', 'app', '--', 'sh', '-c', 'echo "$GREETING/$ROLE"');
  expect(env.stdout).toBe('hello there/app\n');
  const ps = JSON.parse((await hyperOk('ps', '--json')).stdout) as {
    name: string;
    ports: { hostPort: number }[];
  }[];
  for (const row of ps)
    expect(await httpGet(`http://127.0.0.1:${row.ports[0]?.hostPort}/`)).toContain('hello');

  await hyperOk('down');
  expect(await readdir(path.join(stateDir, 'vms'))).toEqual([]);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
});

test('build: is refused with a message that images come from a registry', async () => {
  const compose = path.join(work, 'build.yml');
  const text = 'services:\n  app:\n    build: .\n';
  await writeFile(compose, text);
  const result = await hyper('up', '-f', compose);
  expect(result.code).toBe(125);
  expect(result.stderr).toContain('services.app.build (line 3): images must come from a registry');
  expect(await readFile(compose, 'utf8')).toBe(text);
  expect(await readdir(path.join(stateDir, 'vms')).catch(() => [])).toEqual([]);
});

test('down -f with a file that does not exist is refused, and nothing is removed', async () => {
  const missing = path.join(work, 'absent.yml');
  const result = await hyper('down', '-f', missing);
  // As for up -f: a file that cannot be read is a usage error.
  expect(result.code).toBe(2);
  expect(result.stderr).toContain(`-f: ${missing} does not exist; give the file "hyper up -f" was given`);
});
