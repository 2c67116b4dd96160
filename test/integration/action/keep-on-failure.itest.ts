import { execa } from 'execa';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startFakeActionsCache, type FakeActionsCache } from '../../support/actions-cache.js';
import { hyperOk, qemuProcessesUnder } from '../../support/cli.js';
import { snapshotEnv } from '../../support/env.js';
import { busyboxLayout } from '../../support/fixtures.js';
import { pushLayout } from '../../support/registry/push-layout.js';
import { startRegistry, type TestRegistry } from '../../support/registry/registry.js';
import { jobLeftovers, MAIN_BUNDLE as MAIN, POST_BUNDLE as POST, RunnerJob } from '../../support/runner.js';

// The keep-on-failure input: dist/main and dist/post run as the runner runs
// them, with busybox from a real docker-registry and a named volume the job
// writes to. Two things here are fakes, because the real ones exist only
// inside GitHub: the artifact service (test/support/actions-cache.ts speaks
// @actions/artifact's protocol) and the REST API's answer listing the run's
// jobs, which says whether a step of this job failed.
let registry: TestRegistry;
let services: FakeActionsCache;
let api: Server;
let apiUrl: string;
let image: string;
let work: string;
/** The steps the fake API reports for this job. */
let steps: { name: string; conclusion: string | null }[] = [];
const restoreEnv = snapshotEnv();

beforeAll(async () => {
  registry = await startRegistry({ auth: 'anonymous' });
  image = await pushLayout(registry, await busyboxLayout(), 'test/httpd', '1');
  services = await startFakeActionsCache();
  work = await mkdtemp('/tmp/hyper-keep-');
  api = createServer((request, response) => {
    const ours = request.url?.startsWith('/repos/octo/app/actions/runs/77/attempts/2/jobs');
    response.writeHead(ours ? 200 : 404, { 'content-type': 'application/json' });
    const jobs = [
      { status: 'completed', runner_name: 'other-runner', steps: [{ name: 'x', conclusion: 'failure' }] },
      { status: 'in_progress', runner_name: 'test-runner', steps },
    ];
    response.end(JSON.stringify(ours ? { total_count: jobs.length, jobs } : { message: 'Not Found' }));
  });
  await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
  apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => api?.close(resolve));
  await services?.stop();
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
  restoreEnv();
});

const runnerEnv = () => ({
  ...services.env,
  GITHUB_API_URL: apiUrl,
  GITHUB_REPOSITORY: 'octo/app',
  GITHUB_RUN_ID: '77',
  GITHUB_RUN_ATTEMPT: '2',
  GITHUB_JOB: 'test',
  RUNNER_NAME: 'test-runner',
});

/** main; a step that writes to the volume; the job's steps as given; post. Returns post's log. */
async function job(keep: string, jobSteps: typeof steps): Promise<string> {
  const job = await RunnerJob.create();
  const env = runnerEnv();
  // The runner gives post the same inputs as main.
  const inputs = {
    services: `web:\n  image: ${image}\n  ports: ['80']\n  volumes: ['data:/data']\n`,
    accel: 'tcg',
    cache: 'false',
    'keep-on-failure': keep,
    'github-token': 'fake-token',
  };
  try {
    const main = await job.step(MAIN, inputs, env);
    expect(main.stdout).not.toContain('::error::');
    const stepEnv = { ...process.env, ...(await job.env()) };
    stepEnv.PATH = `${(await job.paths())[0]}:${process.env.PATH}`;
    await execa('hyper', ['exec', 'web', '--', 'sh', '-c', 'echo kept-for-debugging > /data/x'], {
      env: stepEnv,
    });
    steps = jobSteps;
    const post = await job.step(POST, inputs, env);
    expect(post.exitCode).toBe(0);
    expect(await jobLeftovers(job)).toEqual({ qemu: [], temp: [] });
    return post.stdout;
  } finally {
    await job.remove();
  }
}

/** Unzips the newest artifact into a new directory; returns it and its file list. */
async function unzipLatest(): Promise<{ dir: string; files: string[] }> {
  const artifact = services.artifacts().at(-1);
  expect(artifact?.name).toMatch(/^hyper-services-test-2-test-runner-[a-z0-9]+$/);
  const dir = await mkdtemp(path.join(work, 'artifact-'));
  await writeFile(path.join(dir, 'a.zip'), artifact!.body);
  await execa('unzip', ['-q', 'a.zip'], { cwd: dir });
  await rm(path.join(dir, 'a.zip'));
  const files = (await readdir(dir, { recursive: true })).map(String).sort();
  return { dir, files };
}

test('the job has a failed step: volumes mode keeps logs and the volume, which holds what the job wrote', async () => {
  const post = await job('volumes', [
    { name: 'Set up job', conclusion: 'success' },
    { name: 'Run tests', conclusion: 'failure' },
  ]);
  expect(post).toContain(`Keep the services' volumes (step "Run tests" failed)`);
  expect(post).toMatch(
    /keep-on-failure: uploaded artifact hyper-services-test-2-test-runner-[a-z0-9]+ \([\d.]+ MiB, id 1\) in \d+ ms/,
  );
  expect(post).not.toContain('::warning::');
  const { dir, files } = await unzipLatest();
  expect(files).toEqual(['web', 'web/console.log', 'web/service.log', 'web/vm.json', 'web/vol0-data.qcow2']);
  // The volume is a disk image like any other: read the file the job wrote from it on the host.
  const raw = path.join(dir, 'vol.raw');
  await execa('qemu-img', ['convert', '-O', 'raw', path.join(dir, 'web/vol0-data.qcow2'), raw]);
  const cat = await execa('debugfs', ['-R', 'cat /x', raw]);
  expect(cat.stdout).toBe('kept-for-debugging');
});

test('checkpoint mode keeps a hyper export that resumes elsewhere with the volume', async () => {
  const post = await job('checkpoint', [{ name: 'Run tests', conclusion: 'failure' }]);
  expect(post).not.toContain('::warning::');
  const { files, dir } = await unzipLatest();
  const tar = files.find((f) => /^web\/web-debug-[a-z0-9]+\.tar$/.test(f));
  expect(tar).toBeDefined();
  // Resume it in a state dir of our own, as a developer would on their machine.
  const state = await mkdtemp(path.join(work, 'state-'));
  process.env.HYPER_STATE_DIR = state;
  process.env.HYPER_ACCEL = 'tcg';
  try {
    await hyperOk('import', path.join(dir, tar as string));
    const tag = /web-(debug-[a-z0-9]+)\.tar$/.exec(tar as string)?.[1] as string;
    await hyperOk('restore', 'web', tag);
    expect((await hyperOk('exec', 'web', '--', 'cat', '/data/x')).stdout).toBe('kept-for-debugging\n');
  } finally {
    await hyperOk('rm', '-f', 'web');
    expect(await qemuProcessesUnder(state)).toEqual([]);
    await rm(state, { recursive: true, force: true });
  }
});

test('a job whose steps all passed keeps nothing', async () => {
  const calls = services.calls.CreateArtifact ?? 0;
  const post = await job('volumes', [{ name: 'Run tests', conclusion: 'success' }]);
  expect(post).toContain('keep-on-failure: the job has not failed; nothing kept');
  expect(services.calls.CreateArtifact ?? 0).toBe(calls);
});

test('a bad keep-on-failure value fails main with a message naming the input', async () => {
  const job = await RunnerJob.create();
  try {
    const inputs = { services: `web:\n  image: ${image}\n`, 'keep-on-failure': 'always' };
    const main = await job.step(MAIN, inputs);
    expect(main.exitCode).toBe(1);
    expect(main.stdout).toContain(
      '::error::input "keep-on-failure": "always" is not one of false, volumes, checkpoint',
    );
    // Post gets the same bad input; with no state from main it has nothing to do and does not fail.
    const post = await job.step(POST, inputs);
    expect(post.exitCode).toBe(0);
    expect(post.stdout).toContain('Nothing to tear down');
    expect(await jobLeftovers(job)).toEqual({ qemu: [], temp: [] });
  } finally {
    await job.remove();
  }
});

test('when the API cannot say, nothing is kept and the reason is a warning', async () => {
  const jobDir = await RunnerJob.create();
  try {
    const env = { ...runnerEnv(), GITHUB_RUN_ID: '78' };
    const inputs = {
      services: `web:\n  image: ${image}\n`,
      accel: 'tcg',
      cache: 'false',
      'keep-on-failure': 'volumes',
    };
    const main = await jobDir.step(MAIN, inputs, env);
    expect(main.exitCode).toBe(0);
    const post = await jobDir.step(POST, inputs, env);
    expect(post.stdout).toMatch(
      /::warning::keep-on-failure: cannot tell whether the job failed, so nothing is kept: Not Found/,
    );
    expect(await jobLeftovers(jobDir)).toEqual({ qemu: [], temp: [] });
  } finally {
    await jobDir.remove();
  }
});
