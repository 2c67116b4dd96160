import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { httpGet, qemuProcessesUnder } from '../../support/cli.js';
import { startFakeActionsCache, type FakeActionsCache } from '../../support/actions-cache.js';
import { busyboxLayout } from '../../support/fixtures.js';
import { startFaultProxy, type FaultProxy } from '../../support/registry/proxy.js';
import { pushLayout } from '../../support/registry/push-layout.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';
import { jobLeftovers, MAIN_BUNDLE as MAIN, POST_BUNDLE as POST, RunnerJob } from '../../support/runner.js';

// The `cache` input across workflow runs: each run is a job with an empty
// HYPER_CACHE_DIR, as on a fresh GitHub-hosted runner. The image comes from a
// real docker-registry (behind a recording proxy). The Actions cache service
// is a local fake, because the real one exists only inside GitHub; it speaks
// the protocol @actions/cache uses (test/support/actions-cache.ts).
let registry: TestRegistry;
let proxy: FaultProxy;
let cache: FakeActionsCache;
let image: string;
const cacheDirs: string[] = [];
/** A runner's temp dir: the same path in every job it runs, emptied after each. */
let runnerTemp: string;

beforeAll(async () => {
  registry = await startRegistry({ auth: 'anonymous' });
  proxy = await startFaultProxy(registry.host);
  const pushed = await pushLayout(registry, await busyboxLayout(), 'test/httpd', '1');
  image = pushed.replace(registry.host, proxy.host);
  cache = await startFakeActionsCache();
  runnerTemp = await mkdtemp('/tmp/hyper-runner-temp-');
  cacheDirs.push(runnerTemp);
});

afterAll(async () => {
  await cache?.stop();
  await proxy?.stop();
  await registry?.stop();
  for (const dir of cacheDirs) await rm(dir, { recursive: true, force: true });
});

const services = () => `web:\n  image: ${image}\n  ports: ['80']\n`;

/** One workflow run on a fresh runner: main, a check of the service, post. */
async function workflowRun(inputs: Record<string, string> = {}) {
  const hyperCache = await mkdtemp('/tmp/hyper-cache-run-');
  cacheDirs.push(hyperCache);
  const job = await RunnerJob.create();
  const env = { ...cache.env, HYPER_CACHE_DIR: hyperCache, RUNNER_TEMP: runnerTemp };
  const before = proxy.requests.length;
  try {
    const main = await job.step(MAIN, { services: services(), accel: 'tcg', ...inputs }, env);
    expect(main.stdout).not.toContain('::error::');
    expect(main.exitCode).toBe(0);
    const port = (await job.env()).HYPER_WEB_PORT_80;
    expect(await httpGet(`http://127.0.0.1:${port}/`)).toContain('hello');
    const post = await job.step(POST, {}, env);
    expect(post.exitCode).toBe(0);
    expect(await jobLeftovers(job)).toEqual({ qemu: [], temp: [] });
    expect(await readdir(runnerTemp)).toEqual([]);
    expect(await qemuProcessesUnder(runnerTemp)).toEqual([]);
    const blobGets = proxy.requests
      .slice(before)
      .filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
    const partials = (await readdir(hyperCache, { recursive: true })).filter((f) =>
      String(f).endsWith('.partial'),
    );
    return { main: main.stdout, post: post.stdout, blobGets: blobGets.length, partials };
  } finally {
    await job.remove();
  }
}

test('the first run saves blobs, root filesystem and service template; the next restores them, downloads no blob and resumes the service', async () => {
  const first = await workflowRun();
  expect(first.main).toContain('Image cache: nothing restored; the images are pulled');
  expect(first.blobGets).toBeGreaterThan(0);
  expect(first.main).toContain('Built root filesystem');
  expect(first.main).toMatch(
    /web: kept as service template \S+\/templates\/service\/web-[0-9a-f]{16} in \d+ ms/,
  );
  expect(first.post).toMatch(
    /Image cache: saved 2 blob\(s\), 1 root filesystem\(s\) and 1 service template\(s\) as hyper-services-v1-linux-x64-[0-9a-f]{16}-[0-9a-f]{16} in \d+ ms/,
  );
  expect(first.post).not.toContain('::warning::');
  expect(cache.keys()).toHaveLength(1);
  const key = cache.keys()[0] as string;

  const second = await workflowRun();
  expect(second.main).toMatch(
    new RegExp(
      `Image cache: restored 2 blob\\(s\\), 1 root filesystem\\(s\\) and 1 service template\\(s\\) from ${key} in \\d+ ms`,
    ),
  );
  expect(second.main).toContain('Reusing root filesystem');
  // Its own HYPER_CACHE_DIR, so the template came with the cache entry; the page is served as before.
  expect(second.main).toMatch(
    /web: started from service template \S+\/templates\/service\/web-[0-9a-f]{16} in \d+ ms/,
  );
  expect(second.main).not.toContain('kept as service template');
  expect(second.main).not.toContain('::warning::');
  expect(second.blobGets).toBe(0);
  expect(second.post).toContain(`Image cache: ${key} is up to date; not saved again`);
  expect(cache.keys()).toEqual([key]);
  expect(second.partials).toEqual([]);
});

test('cache: false neither restores nor saves', async () => {
  const calls = { ...cache.calls };
  const run = await workflowRun({ cache: 'false' });
  expect(run.main).not.toContain('Image cache');
  expect(run.post).not.toContain('Image cache');
  expect(cache.calls).toEqual(calls);
});

test('a damaged cache entry is a warning: the image is pulled and built again, and nothing half-written stays', async () => {
  const key = cache.keys()[0] as string;
  expect(key).toBeDefined();
  cache.corrupt(key, Math.floor((cache.size(key) as number) / 2));
  const run = await workflowRun();
  expect(run.main).toContain('::warning::Failed to restore:');
  expect(run.blobGets).toBeGreaterThan(0);
  expect(run.main).toContain('Built root filesystem');
  expect(run.partials).toEqual([]);
});

test('a cache input that is not a boolean fails main with a message naming the input', async () => {
  const job = await RunnerJob.create();
  try {
    const main = await job.step(MAIN, { services: services(), cache: 'sometimes' });
    expect(main.exitCode).toBe(1);
    expect(main.stdout).toContain('::error::input "cache": "sometimes" is not a boolean; use true or false');
    await job.step(POST, {});
    expect(await jobLeftovers(job)).toEqual({ qemu: [], temp: [] });
  } finally {
    await job.remove();
  }
});
