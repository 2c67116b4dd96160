import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hyper } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';

// hyper config boots nothing: it reads the files, merges them as up would, and prints the plan.
const restoreEnv = snapshotEnv();
let dir: string;
beforeEach(() => {
  delete process.env.COMPOSE_PROFILES;
  process.env.HYPER_STATE_DIR = '/nonexistent/hyper-state';
  dir = mkdtempSync(path.join(tmpdir(), 'hyper-config-'));
  mkdirSync(path.join(dir, 'ci'));
  writeFileSync(
    path.join(dir, 'compose.yml'),
    'services:\n  web:\n    image: nginx:1.27\n    environment: { MODE: dev }\n    ports: ["8080:80"]\n',
  );
  writeFileSync(
    path.join(dir, 'ci', 'override.yml'),
    'services:\n  web:\n    environment: { MODE: ci }\n    volumes: ["./site:/usr/share/nginx/html"]\n  cache:\n    image: redis:7\n',
  );
  writeFileSync(path.join(dir, 'services.yml'), 'cache:\n  image: redis:7\n');
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
  restoreEnv();
});

test('hyper config -f A -f B merges the compose files in order, paths from the first one', async () => {
  const result = await hyper(
    'config',
    '--format',
    'json',
    '-f',
    path.join(dir, 'compose.yml'),
    '-f',
    path.join(dir, 'ci', 'override.yml'),
  );
  expect(result).toMatchObject({ code: 0, stderr: '' });
  const plan = JSON.parse(result.stdout) as {
    services: Record<string, { image: string; env: string[]; volumes: string[]; baseDir: string }>;
    order: string[][];
  };
  expect(Object.keys(plan.services)).toEqual(['web', 'cache']);
  expect(plan.services.web).toMatchObject({
    image: 'nginx:1.27',
    env: ['MODE=dev', 'MODE=ci'],
    volumes: ['./site:/usr/share/nginx/html'],
    baseDir: dir,
  });
  expect(plan.services.cache).toMatchObject({ image: 'redis:7', baseDir: dir });
});

test('a services YAML among several -f is a usage error', async () => {
  const services = path.join(dir, 'services.yml');
  expect(await hyper('config', '-f', path.join(dir, 'compose.yml'), '-f', services)).toEqual({
    code: 2,
    stdout: '',
    stderr: `hyper config: -f ${services}: a services YAML cannot be merged with other files; give it alone, or give only compose files\n`,
  });
});

test('one -f of a services YAML still works alone', async () => {
  const result = await hyper('config', '--format', 'json', '-f', path.join(dir, 'services.yml'));
  expect(result.code).toBe(0);
  expect(Object.keys((JSON.parse(result.stdout) as { services: object }).services)).toEqual(['cache']);
});
