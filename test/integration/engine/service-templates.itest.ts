import { appendFile, cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';
import { addDirLayer, serviceImageLayouts } from '../../support/fixtures.js';
import { psql, until } from '../../support/postgres.js';
import { pushLayout } from '../../support/registry/push-layout.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';
import { forgetServiceTemplates } from '../../support/templates.js';

// Service templates with real VMs: the Debian-built postgres image, with a
// seed script baked into /docker-entrypoint-initdb.d, from a real registry.
// Its first `hyper up` runs initdb and the seed and keeps the healthy
// service as a template; later jobs (other state dirs, the same cache)
// resume from it. The entrypoint logs "applying FILE" for each seed script,
// so a log without it is a start that ran no initdb.
let registry: TestRegistry;
let work: string;
let compose: string;
let templateDir: string | undefined;
const jobs: string[] = [];
const restoreEnv = snapshotEnv();

beforeAll(async () => {
  process.env.HYPER_ACCEL = 'tcg';
  // One kept by an earlier run of this file would make the first up a resume.
  await forgetServiceTemplates('pgseed');
  work = await mkdtemp('/tmp/hyper-svct-');
  const layout = path.join(work, 'layout');
  await cp((await serviceImageLayouts()).postgres, layout, { recursive: true });
  const seed = path.join(work, 'seed');
  await mkdir(path.join(seed, 'docker-entrypoint-initdb.d'), { recursive: true });
  await writeFile(
    path.join(seed, 'docker-entrypoint-initdb.d', '01-seed.sql'),
    'create table seeded as select generate_series(1, 250) as id;\n',
  );
  await addDirLayer(layout, seed, ['--owner=0', '--group=0']);
  registry = await startRegistry({ auth: 'anonymous' });
  const image = await pushLayout(registry, layout, 'test/pgseed', '15');
  compose = path.join(work, 'compose.yml');
  await writeFile(
    compose,
    `services:
  pgseed:
    image: ${image}
    mem_limit: 256m
    ports: ["5432"]
    volumes: ["pgdata:/var/lib/postgresql/data"]
volumes:
  pgdata:
`,
  );
});

afterAll(async () => {
  for (const stateDir of jobs) {
    process.env.HYPER_STATE_DIR = stateDir;
    await hyper('down', '--time', '0');
    expect(await qemuProcessesUnder(stateDir)).toEqual([]);
    await rm(stateDir, { recursive: true, force: true });
  }
  if (templateDir) await rm(templateDir, { recursive: true, force: true });
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
  restoreEnv();
});

/** `hyper ARGV` in the job of `stateDir` (the CLI runs in this process and reads its env). */
async function on(stateDir: string, ...argv: string[]) {
  process.env.HYPER_STATE_DIR = stateDir;
  return hyperOk(...argv);
}

/** A new job: its own state dir, the host's cache. */
async function newJob(): Promise<string> {
  const stateDir = await mkdtemp('/tmp/hyper-svct-job-');
  jobs.push(stateDir);
  return stateDir;
}

async function up(stateDir: string, ...flags: string[]) {
  const result = await on(
    stateDir,
    'up',
    '-f',
    compose,
    '--network',
    'user',
    '--wait-timeout',
    '180',
    ...flags,
  );
  const ps = JSON.parse((await on(stateDir, 'ps', '--json')).stdout) as {
    pid: number;
    origin: string;
    ports: { hostPort: number }[];
  }[];
  const port = String(ps[0]?.ports[0]?.hostPort);
  const log = await on(stateDir, 'logs', 'pgseed');
  return { ...result, port, origin: ps[0]?.origin, pid: ps[0]?.pid, log: log.stdout + log.stderr };
}

async function down(stateDir: string): Promise<void> {
  await on(stateDir, 'down', '--time', '0');
  await on(stateDir, 'volume', 'rm', 'pgdata');
}

const count = (port: string) => until('pgseed answering', () => psql(port, 'select count(*) from seeded'));

test('the first up seeds and keeps the healthy service; a later job resumes from it with the rows and no initdb', async () => {
  const first = await newJob();
  const seeded = await up(first);
  expect(seeded.origin).toBe('boot-template');
  expect(seeded.log).toContain('applying /docker-entrypoint-initdb.d/01-seed.sql');
  // Matched against the whole output, so a failure shows the warning that took its place.
  expect(seeded.stderr).toMatch(/pgseed: kept as service template \S+ in \d+ ms/);
  templateDir = /pgseed: kept as service template (\S+) in \d+ ms/.exec(seeded.stderr)?.[1];
  expect(await count(seeded.port)).toBe('250');
  await down(first);

  const second = await newJob();
  const resumed = await up(second);
  expect(resumed.stderr).toMatch(
    new RegExp(`pgseed: started from service template ${templateDir} in \\d+ ms`),
  );
  expect(resumed.stdout).toMatch(/^pgseed .* service template\n/m);
  expect(resumed.origin).toBe('service-template');
  expect(await count(resumed.port)).toBe('250');
  // No initdb, no seed, no start-up: the server was already running when it was kept.
  expect(resumed.log).not.toContain('applying');
  expect(resumed.log).not.toContain('database system is ready');
  // It maps the template's RAM privately, and the template lists it.
  const listed = JSON.parse((await on(second, 'template', 'ls', '--json')).stdout) as {
    kind: string;
    dir: string;
    usedBy: number[];
  }[];
  expect(listed.find((t) => t.dir === templateDir)).toMatchObject({ kind: 'service', usedBy: [resumed.pid] });
  // A working service of its own: writes stay in this job.
  await psql(resumed.port, 'insert into seeded values (1000)');
  expect(await count(resumed.port)).toBe('251');
  await down(second);

  const third = await newJob();
  const again = await up(third);
  expect(again.origin).toBe('service-template');
  expect(await count(again.port)).toBe('250');
  await down(third);
});

test('--template off boots in full and seeds again; a damaged template is refused, removed and kept anew', async () => {
  const off = await newJob();
  const full = await up(off, '--template', 'off');
  expect(full.origin).toBe('boot');
  expect(full.log).toContain('applying /docker-entrypoint-initdb.d/01-seed.sql');
  expect(full.stderr).not.toContain('service template');
  expect(await count(full.port)).toBe('250');
  await down(off);

  expect(templateDir).toBeDefined();
  await appendFile(path.join(String(templateDir), 'state'), 'x');
  const damaged = await newJob();
  const refused = await up(damaged);
  expect(refused.stderr).toContain(
    `pgseed: warning: the service template ${templateDir} was refused and removed: its device state is not what was saved (digest differs); booting in full\n`,
  );
  expect(refused.origin).toBe('boot-template');
  expect(refused.log).toContain('applying /docker-entrypoint-initdb.d/01-seed.sql');
  expect(refused.stderr).toContain(`pgseed: kept as service template ${templateDir} in`);
  expect(await count(refused.port)).toBe('250');
  await down(damaged);
  expect((await readdir(path.dirname(String(templateDir)))).filter((n) => n.includes('.making-'))).toEqual(
    [],
  );
});
