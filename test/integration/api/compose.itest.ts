import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { httpGet, qemuProcessesUnder } from '../../support/cli.js';
import { until } from '../../support/postgres.js';
import { type TestRegistry } from '../../support/registry/registry.js';
import { dockerOk, type RunningDaemon, startApiFixture, stopApiFixture } from '../../support/serve.js';

// Debian's docker-compose 1.29 (the Python one, a client only) against
// `hyper serve`: a two-service project on its own network, each service a
// real microVM under TCG, the image from a real registry.
const COMPOSE = '/usr/bin/docker-compose';
const PROJECT = 'hyperit';
let registry: TestRegistry;
let daemon: RunningDaemon;
let stateDir: string;
let projectDir: string;

beforeAll(async () => {
  let image: string;
  ({ registry, image, stateDir, daemon } = await startApiFixture('/tmp/hyper-compose-it-'));
  projectDir = await mkdtemp('/tmp/hyper-compose-project-');
  // web: the image's httpd, its port published on a free one; client: asks web for its page by name.
  await writeFile(
    path.join(projectDir, 'docker-compose.yml'),
    [
      'version: "3.8"',
      'services:',
      '  web:',
      `    image: ${image}`,
      '    ports: ["80"]',
      '  client:',
      `    image: ${image}`,
      '    entrypoint: ["sh", "-c", "while true; do wget -q -O - http://web/; sleep 1; done"]',
      '    depends_on: [web]',
      '',
    ].join('\n'),
  );
});

afterAll(async () => {
  await compose('down');
  await stopApiFixture({ registry, daemon, stateDir });
  await rm(projectDir, { recursive: true, force: true });
});

/** docker-compose on the project, against the daemon; never throws on a non-zero exit. */
async function compose(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await execa(COMPOSE, ['-p', PROJECT, ...args], {
    cwd: projectDir,
    env: daemon.env,
    extendEnv: true,
    reject: false,
    stdin: 'ignore',
  });
  return { code: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** docker-compose that must succeed; its stdout. */
async function composeOk(...args: string[]): Promise<string> {
  const result = await compose(...args);
  if (result.code !== 0)
    throw new Error(
      `docker-compose ${args.join(' ')} exited ${result.code}:\n${result.stderr}\n--- hyper serve:\n${daemon.output().slice(-3000)}`,
    );
  return result.stdout;
}

test('up -d, the published port, the service name, logs, then down leaves nothing', async () => {
  await composeOk('up', '-d');
  const running = await composeOk('ps', '--services', '--filter', 'status=running');
  expect(running.split('\n').sort()).toEqual(['client', 'web']);
  expect(await dockerOk(daemon, 'network', 'ls', '--format', '{{.Name}}')).toContain(`${PROJECT}_default`);
  // A second up finds the project as it left it.
  const again = await compose('up', '-d');
  expect(again).toEqual(
    expect.objectContaining({ code: 0, stderr: expect.stringContaining('hyperit_web_1 is up-to-date') }),
  );

  const published = (await composeOk('port', 'web', '80')).trim();
  expect(published).toMatch(/^127\.0\.0\.1:\d+$/);
  expect(await httpGet(`http://${published}/`)).toContain('hello from a hyper-services microVM');

  // The client finds web by its service name on the project's network.
  expect(await composeOk('exec', '-T', 'client', 'wget', '-q', '-O', '-', 'http://web/')).toContain(
    'hello from a hyper-services microVM',
  );
  const logs = await until('the client logs a page from web', async () => {
    const text = await composeOk('logs', '--no-color', '--tail', '5', 'client');
    if (!text.includes('client_1  | <h1>hello from a hyper-services microVM</h1>'))
      throw new Error(`no page in the logs yet:\n${text}`);
    return text;
  });
  expect(logs).toContain('Attaching to hyperit_client_1');

  await composeOk('down');
  expect((await dockerOk(daemon, 'ps', '-a', '-q')).trim()).toBe('');
  expect(await dockerOk(daemon, 'network', 'ls', '--format', '{{.Name}}')).not.toContain(PROJECT);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
});
