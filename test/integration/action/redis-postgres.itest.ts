import { execa } from 'execa';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { serviceImageLayouts } from '../../support/fixtures.js';
import { pushLayout } from '../../support/registry/push-layout.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';
import { MAIN_BUNDLE as MAIN, POST_BUNDLE as POST, RunnerJob } from '../../support/runner.js';
import { expectNothingLeft } from '../../support/runner-expect.js';

// The acceptance: Debian-built redis and postgres images served by a
// real registry, booted by dist/main, reached from the host with redis-cli and
// psql, and gone after dist/post.
let registry: TestRegistry;
let redis: string;
let postgres: string;

beforeAll(async () => {
  const layouts = await serviceImageLayouts();
  registry = await startRegistry({ auth: 'anonymous' });
  redis = await pushLayout(registry, layouts.redis, 'test/redis', '7');
  postgres = await pushLayout(registry, layouts.postgres, 'test/postgres', '15');
});

afterAll(async () => {
  await registry?.stop();
});

async function hostClients(ports: { redis: string; db: string }): Promise<void> {
  const ping = await execa('redis-cli', ['-h', '127.0.0.1', '-p', ports.redis, 'PING']);
  expect(ping.stdout).toBe('PONG');
  const select = await execa('psql', [
    '-h',
    '127.0.0.1',
    '-p',
    ports.db,
    '-U',
    'postgres',
    '-tAc',
    'select 1',
  ]);
  expect(select.stdout).toBe('1');
}

test('a services input: redis and postgres answer host-side clients between main and post', async () => {
  const job = await RunnerJob.create();
  try {
    const services = `
redis:
  image: ${redis}
  ports: ['6379']
db:
  image: ${postgres}
  ports: ['5432']
  options: --memory 512m
`;
    const main = await job.step(MAIN, { services, accel: 'tcg', 'wait-timeout': '180' });
    expect(main.stdout).not.toContain('::error::');
    expect(main.exitCode).toBe(0);
    const env = await job.env();
    await hostClients({ redis: env.HYPER_REDIS_PORT_6379 as string, db: env.HYPER_DB_PORT_5432 as string });
    const outputs = JSON.parse((await job.outputs()).services as string);
    expect(Object.keys(outputs).sort()).toEqual(['db', 'redis']);
    const summary = await readFile(job.file('summary'), 'utf8');
    expect(summary).toContain(`<td>${redis}@sha256:`);
    expect(summary).toContain(`<td>${postgres}@sha256:`);

    const post = await job.step(POST, {});
    expect(post.exitCode).toBe(0);
    expect(post.stdout).toContain('database system is ready to accept connections');
    expect(post.stdout).not.toContain('::warning::');
    await expectNothingLeft(job);
  } finally {
    await job.remove();
  }
});

test('compose files merged in order: the override depends_on service_healthy starts postgres only once redis is healthy; compose-profiles selects, ignored keys warn', async () => {
  const job = await RunnerJob.create();
  const dir = await mkdtemp('/tmp/hyper-compose-');
  try {
    const compose = path.join(dir, 'compose.yml');
    await writeFile(
      compose,
      `services:
  redis:
    image: ${redis}
    ports: ['6379']
  db:
    image: ${postgres}
    ports: ['5432']
    profiles: [ci]
    logging:
      driver: json-file
  debug:
    image: ${redis}
    profiles: [debug]
`,
    );
    // An override file, as docker compose takes after the first: no image, only what it changes.
    const override = path.join(dir, 'compose.ci.yml');
    await writeFile(
      override,
      `services:
  db:
    depends_on:
      redis:
        condition: service_healthy
`,
    );
    const main = await job.step(MAIN, {
      'compose-file': `${compose}\n${override}\n`,
      'compose-profiles': 'ci',
      accel: 'tcg',
      'wait-timeout': '180',
    });
    expect(main.stdout).not.toContain('::error::');
    expect(main.exitCode).toBe(0);
    // The ignored key is one warning line; the service of a profile not enabled does not run.
    expect(main.stdout).toContain(
      `::warning::${compose}: services.db.logging (line 9): ignored: a service's output is always kept`,
    );
    expect(Object.keys(JSON.parse((await job.outputs()).services as string)).sort()).toEqual(['db', 'redis']);
    const lines = main.stdout.split('\n');
    expect(lines.findIndex((l) => l.startsWith('redis: healthy after'))).toBeGreaterThan(-1);
    expect(lines.findIndex((l) => l.startsWith('redis: healthy after'))).toBeLessThan(
      lines.findIndex((l) => l.startsWith('db: VM running')),
    );
    const env = await job.env();
    await hostClients({ redis: env.HYPER_REDIS_PORT_6379 as string, db: env.HYPER_DB_PORT_5432 as string });
    const post = await job.step(POST, {});
    expect(post.exitCode).toBe(0);
    await expectNothingLeft(job);
  } finally {
    await job.remove();
    await rm(dir, { recursive: true, force: true });
  }
});
