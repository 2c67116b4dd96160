import { execa } from 'execa';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { httpGet, qemuProcessesUnder } from '../../support/cli.js';
import { busyboxLayout } from '../../support/fixtures.js';
import { MAIN_BUNDLE, POST_BUNDLE, RunnerJob } from '../../support/runner.js';

// dist/main then dist/post, run as the Actions runner runs them; a VM started
// by a later step with the `hyper` the main step put on PATH.
test('main sets up hyper for later steps; post tears down every VM of the job and its state', async () => {
  const job = await RunnerJob.create();
  try {
    const main = await job.step(MAIN_BUNDLE, { accel: 'tcg', 'github-token': '' });
    expect(main.stdout).not.toContain('::error::');
    expect(main.exitCode).toBe(0);

    const outputs = await job.outputs();
    expect(outputs.accel).toBe('tcg');
    const env = await job.env();
    expect(env.HYPER_ACCEL).toBe('tcg');
    expect(env.HYPER_STATE_DIR).toBe(path.join(job.runnerTemp, 'hyper'));
    expect(outputs['state-dir']).toBe(env.HYPER_STATE_DIR);
    const [binDir] = await job.paths();
    expect(binDir).toBeDefined();

    // A later `run:` step: PATH and env as the runner would give it.
    const stepEnv = { ...process.env, ...env, PATH: `${binDir}:${process.env.PATH}` };
    const image = await busyboxLayout();
    const run = await execa('hyper', ['run', '--name', 'web', '-p', '80', `oci:${image}`], {
      env: stepEnv,
      reject: false,
    });
    expect(run.stderr).not.toContain('hyper run:');
    expect(run.stdout).toBe('web');
    const ps = JSON.parse((await execa('hyper', ['ps', '--json'], { env: stepEnv })).stdout) as {
      ports: { hostPort: number }[];
    }[];
    expect(await httpGet(`http://127.0.0.1:${ps[0]?.ports[0]?.hostPort}/`)).toContain('hello');

    const post = await job.step(POST_BUNDLE, { accel: 'tcg' });
    expect(post.exitCode).toBe(0);
    expect(post.stdout).toContain('::group::Logs of web');
    expect(post.stdout).toContain('web: stopped (exit code 143)');
    expect(post.stdout).not.toContain('::warning::');
    expect(await qemuProcessesUnder(job.dir)).toEqual([]);
    expect(await stat(env.HYPER_STATE_DIR as string).catch(() => undefined)).toBeUndefined();
    expect(await readdir(job.runnerTemp)).toEqual([]);
  } finally {
    await job.remove();
  }
});

test('post without a main step that got that far only says so', async () => {
  const job = await RunnerJob.create();
  try {
    const post = await job.step(POST_BUNDLE, {});
    expect(post.exitCode).toBe(0);
    expect(post.stdout).toContain('Nothing to tear down');
  } finally {
    await job.remove();
  }
});

test('a bad accel input fails the main step with a message naming the input', async () => {
  const job = await RunnerJob.create();
  try {
    const main = await job.step(MAIN_BUNDLE, { accel: 'fast' });
    expect(main.exitCode).toBe(1);
    expect(main.stdout).toContain(
      '::error::input "accel": "fast" is not an accelerator; use auto, kvm or tcg',
    );
  } finally {
    await job.remove();
  }
});
