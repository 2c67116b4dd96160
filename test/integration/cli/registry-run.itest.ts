import { mkdtemp, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { pushLayout } from '../../support/registry/push-layout.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';
import { httpGet, hyper, hyperOk, qemuProcessesUnder } from '../../support/cli.js';
import { busyboxLayout } from '../../support/fixtures.js';
import { snapshotEnv } from '../../support/env.js';

// Registry -> blob store -> ext4 base -> VM, through the CLI: the busybox httpd
// layout's blobs pushed to a real registry (Debian's docker-registry) with token auth.
let registry: TestRegistry;
let stateDir: string;
let cache: string;
let reference: string;
const restoreEnv = snapshotEnv();

beforeAll(async () => {
  process.env.HYPER_ACCEL = 'tcg';
  // The guest bundle from the shared cache; images go to a cache of this test's own.
  const setup = await hyperOk('setup');
  const kernel = /^kernel (.+)$/m.exec(setup.stdout)?.[1] as string;
  process.env.HYPER_GUEST_BUNDLE_DIR = path.dirname(kernel);
  cache = await mkdtemp('/tmp/hyper-cache-it-');
  stateDir = await mkdtemp('/tmp/hyper-it-');
  process.env.HYPER_CACHE_DIR = cache;
  process.env.HYPER_STATE_DIR = stateDir;

  registry = await startRegistry({ auth: 'token' });
  reference = await pushLayout(registry, await busyboxLayout(), 'demo/httpd', '1');
  process.env.HYPER_REGISTRY_USERNAME = registry.credentials?.username;
  process.env.HYPER_REGISTRY_PASSWORD = registry.credentials?.password;
});

afterAll(async () => {
  for (const name of await readdir(path.join(stateDir, 'vms')).catch(() => [])) await hyper('rm', '-f', name);
  expect(await qemuProcessesUnder(stateDir)).toEqual([]);
  await registry?.stop();
  await rm(cache, { recursive: true, force: true });
  await rm(stateDir, { recursive: true, force: true });
  restoreEnv();
});

test('hyper pull, images, run from the registry, then image prune', async () => {
  const pull = await hyperOk('pull', reference);
  expect(pull.stdout).toMatch(new RegExp(`^${reference}@sha256:[0-9a-f]{64}\\n$`));
  expect(pull.stderr).toContain('Built root filesystem');
  expect(pull.stderr).not.toContain(registry.credentials?.password as string);
  const again = await hyperOk('pull', reference);
  expect(again.stderr).toContain('Root filesystem up to date');

  const images = JSON.parse((await hyperOk('images', '--json')).stdout) as {
    name: string;
    rootfs: boolean;
  }[];
  expect(images).toEqual([expect.objectContaining({ name: reference, rootfs: true })]);

  await hyperOk('run', '--name', 'web', '-p', '80', reference);
  const ps = JSON.parse((await hyperOk('ps', '--json')).stdout) as { ports: { hostPort: number }[] }[];
  expect(await httpGet(`http://127.0.0.1:${ps[0]?.ports[0]?.hostPort}/`)).toContain(
    'hello from a hyper-services microVM',
  );

  // In use by a VM: prune -a keeps it.
  expect((await hyperOk('image', 'prune', '-a')).stdout).not.toContain('untagged');
  expect(await readdir(path.join(cache, 'rootfs', 'v1'))).toHaveLength(1);
  await hyperOk('rm', '-f', 'web');
  const prune = await hyperOk('image', 'prune', '-a');
  expect(prune.stdout).toContain(`untagged: ${reference}`);
  expect(await readdir(path.join(cache, 'rootfs', 'v1'))).toEqual([]);
  expect(await readdir(path.join(cache, 'store', 'blobs', 'sha256'))).toEqual([]);
  expect(JSON.parse((await hyperOk('images', '--json')).stdout)).toEqual([]);
});

test('an unknown repository names the reference and the registry; wrong credentials leak no secret', async () => {
  const missing = await hyper('pull', `${registry.host}/demo/nope:1`);
  expect(missing.code).toBe(125);
  expect(missing.stderr).toContain(`${registry.host}/demo/nope:1`);
  expect(missing.stderr).toContain(`registry ${registry.host}`);

  process.env.HYPER_REGISTRY_PASSWORD = 'not-the-password-42';
  const denied = await hyper('pull', reference);
  process.env.HYPER_REGISTRY_PASSWORD = registry.credentials?.password;
  expect(denied.code).toBe(125);
  expect(denied.stderr).toContain(`authentication failed for ${registry.host}`);
  expect(denied.stderr).not.toContain('not-the-password-42');
});
