import { execa } from 'execa';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { startFakeActionsCache, type FakeActionsCache } from '../../support/actions-cache.js';
import { hyperOk } from '../../support/cli.js';
import { serviceImageLayouts } from '../../support/fixtures.js';
import { pushLayout } from '../../support/registry/push-layout.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';
import { jobLeftovers, MAIN_BUNDLE as MAIN, POST_BUNDLE as POST, RunnerJob } from '../../support/runner.js';

// The checkpoint-key input across workflow runs: the first run seeds redis
// (in memory only: it runs without persistence) and checkpoints it; the next
// run starts redis from that checkpoint and finds the key without seeding.
// Each run is a new job (new state dir) running dist/main and dist/post as
// the runner does. redis comes from a real docker-registry. The Actions cache
// service is a local fake, because the real one exists only inside GitHub; it
// speaks the protocol @actions/cache uses (test/support/actions-cache.ts).
let registry: TestRegistry;
let cache: FakeActionsCache;
let redis: string;
/** A runner's temp dir: the same path in every job it runs, emptied after each. */
let runnerTemp: string;

beforeAll(async () => {
  registry = await startRegistry({ auth: 'anonymous' });
  redis = await pushLayout(registry, (await serviceImageLayouts()).redis, 'test/redis', '7');
  cache = await startFakeActionsCache();
  runnerTemp = await mkdtemp('/tmp/hyper-runner-temp-');
});

afterAll(async () => {
  await cache?.stop();
  await registry?.stop();
  await rm(runnerTemp, { recursive: true, force: true });
});

const services = () => `cache:\n  image: ${redis}\n  ports: ['6379']\n  options: --memory 256m\n`;
const inputs = {
  'checkpoint-key': 'redis-seed-1',
  'checkpoint-name': 'seeded',
  cache: 'false',
  accel: 'tcg',
};

/**
 * One workflow run: main, then `seed` as later steps would run it (with the
 * `hyper` main put on PATH, and redis-cli on the published port), then post.
 */
async function workflowRun(
  seed: (run: (program: string, ...args: string[]) => Promise<string>, hit: string) => Promise<void>,
  extraEnv: Record<string, string> = {},
) {
  const job = await RunnerJob.create();
  const env = { ...cache.env, RUNNER_TEMP: runnerTemp, ...extraEnv };
  try {
    const main = await job.step(MAIN, { services: services(), ...inputs }, env);
    expect(main.stdout).not.toContain('::error::');
    expect(main.exitCode).toBe(0);
    const stepEnv: Record<string, string | undefined> = { ...process.env, ...(await job.env()), ...env };
    stepEnv.PATH = `${(await job.paths())[0]}:${process.env.PATH}`;
    const port = stepEnv.HYPER_CACHE_PORT_6379 as string;
    const run = async (program: string, ...args: string[]) => {
      const full = program === 'redis-cli' ? ['-h', '127.0.0.1', '-p', port, ...args] : args;
      return (await execa(program, full, { env: stepEnv, timeout: 120_000 })).stdout;
    };
    const hit = (await job.outputs())['checkpoint-hit'] as string;
    await seed(run, hit);
    const post = await job.step(POST, {}, env);
    expect(post.exitCode).toBe(0);
    expect(await jobLeftovers(job)).toEqual({ qemu: [], temp: [] });
    expect(await readdir(runnerTemp)).toEqual([]);
    return { main: main.stdout, post: post.stdout, hit };
  } finally {
    await job.remove();
  }
}

let firstKey: string;

test('the first run seeds and checkpoints; the next starts from the checkpoint with the seeded key in memory', async () => {
  const first = await workflowRun(async (run, hit) => {
    expect(hit).toBe('false');
    expect(await run('redis-cli', 'CONFIG', 'GET', 'save')).toMatch(/^save\n?$/);
    await run('redis-cli', 'SET', 'greeting', 'seeded-in-run-1');
    await run('hyper', 'snapshot', '--checkpoint', 'cache', 'seeded');
    // Changed after the checkpoint: the next run must not see this.
    await run('redis-cli', 'SET', 'greeting', 'changed-later');
  });
  expect(first.main).toContain(
    'Checkpoint cache: no saved checkpoint for this key; the services boot normally',
  );
  expect(first.post).toMatch(
    /Checkpoint cache: saved "seeded" of cache as hyper-checkpoint-v2-linux-x64-[0-9a-f]{16}-[0-9a-f]{16} in \d+ ms/,
  );
  expect(first.post).not.toContain('::warning::');
  expect(cache.keys()).toHaveLength(1);
  firstKey = cache.keys()[0] as string;

  const second = await workflowRun(async (run, hit) => {
    expect(hit).toBe('true');
    expect(await run('redis-cli', 'GET', 'greeting')).toBe('seeded-in-run-1');
  });
  expect(second.main).toContain(`Checkpoint cache: restored cache from ${firstKey} in `);
  expect(second.main).toMatch(/cache: started from checkpoint seeded in \d+ ms/);
  expect(second.main).not.toContain('::warning::');
  expect(second.post).toContain(
    `Checkpoint cache: ${firstKey} was restored and is up to date; not saved again`,
  );
  expect(cache.keys()).toEqual([firstKey]);
});

test('a checkpoint saved by another guest bundle is refused with the reason, and the service boots normally', async () => {
  expect(firstKey).toBeDefined();
  // The same kernel and initrd, named by directory: to the checkpoint that is another bundle.
  const kernel = /^kernel (.*)$/m.exec((await hyperOk('setup', '--accel', 'tcg')).stdout)?.[1] as string;
  const bundleDir = path.dirname(kernel);
  const third = await workflowRun(
    async (run, hit) => {
      expect(hit).toBe('false');
      expect(await run('redis-cli', 'GET', 'greeting')).toBe('');
      await run('redis-cli', 'SET', 'greeting', 'seeded-in-run-3');
      await run('hyper', 'snapshot', '--checkpoint', 'cache', 'seeded');
    },
    { HYPER_GUEST_BUNDLE_DIR: bundleDir },
  );
  expect(third.main).toMatch(
    new RegExp(
      `::warning::cache: not started from the saved checkpoint: cannot import .*/cache\\.tar: checkpoint "seeded" was made with guest bundle [0-9a-f]{16}, and this host uses dir:${bundleDir}; booting it normally`,
    ),
  );
  // Saved again under this host's own key; the other entry is left alone.
  expect(cache.keys()).toHaveLength(2);
  expect(cache.keys()).toContain(firstKey);
});

test('bad checkpoint and volume-size inputs fail main with a message naming the input', async () => {
  for (const [extra, message] of [
    [
      { 'checkpoint-name': 'not ok' },
      'input "checkpoint-name": "not ok" is not a valid snapshot name: use letters, digits, "_", "." and "-", starting with a letter or digit (at most 63)',
    ],
    [
      { 'checkpoint-key': 'a,b' },
      'input "checkpoint-key": a cache key has no commas and at most 400 characters here',
    ],
    [
      { 'volume-size': 'huge' },
      'input "volume-size": "huge" is not a size; use a number with a unit, such as 512M or 2G',
    ],
  ] as const) {
    const job = await RunnerJob.create();
    try {
      const main = await job.step(MAIN, { services: services(), ...inputs, ...extra });
      expect(main.exitCode).toBe(1);
      expect(main.stdout).toContain(`::error::${message}`);
      await job.step(POST, {});
      expect(await jobLeftovers(job)).toEqual({ qemu: [], temp: [] });
    } finally {
      await job.remove();
    }
  }
});
