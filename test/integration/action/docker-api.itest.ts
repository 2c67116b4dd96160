import { execa } from 'execa';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { qemuProcessesUnder } from '../../support/cli.js';
import { busyboxLayout } from '../../support/fixtures.js';
import {
  MAIN_BUNDLE as MAIN,
  parseCommandFile,
  POST_BUNDLE as POST,
  RunnerJob,
} from '../../support/runner.js';
import { expectNothingLeft } from '../../support/runner-expect.js';
import { DOCKER } from '../../support/serve.js';

// docker-api: true. dist/main leaves `hyper serve` (dist/cli) running over the
// job's VMs and exports DOCKER_HOST; a later step's docker CLI (Debian's, at
// /usr/bin/docker) reaches it; dist/post stops it before the teardown.

interface DaemonState {
  pid: number;
  socket: string;
  socketDir?: string;
}

async function daemonState(job: RunnerJob): Promise<DaemonState> {
  const state = parseCommandFile(await readFile(job.file('state'), 'utf8'));
  return JSON.parse(state['docker-api'] as string) as DaemonState;
}

/** Alive, not a zombie left for an init that does not reap. */
async function isRunning(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat !== '' && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

/** The environment of a later `run:` step, with a docker config of its own. */
function dockerIn(job: RunnerJob, env: Record<string, string>) {
  const stepEnv = { ...process.env, ...env, DOCKER_CONFIG: job.file('docker-config') };
  return (...args: string[]) => execa(DOCKER, args, { env: stepEnv, reject: false, stdin: 'ignore' });
}

/** Kills a daemon a failed test left behind (only that pid), and removes its socket's own dir. */
async function killLeftover(daemon: DaemonState | undefined): Promise<void> {
  if (daemon && (await isRunning(daemon.pid))) process.kill(daemon.pid, 'SIGKILL');
  if (daemon?.socketDir) await rm(daemon.socketDir, { recursive: true, force: true });
}

test('docker-api serves the job to the docker CLI of later steps; post stops it before the teardown', async () => {
  const job = await RunnerJob.create();
  let daemon: DaemonState | undefined;
  try {
    const services = `web:\n  image: oci:${await busyboxLayout()}\n  ports: ['80']\n`;
    const main = await job.step(MAIN, {
      services,
      accel: 'tcg',
      'docker-api': 'true',
      'github-token': '',
    });
    expect(main.stdout).not.toContain('::error::');
    expect(main.exitCode).toBe(0);

    const env = await job.env();
    const socket = path.join(env.HYPER_STATE_DIR as string, 'docker.sock');
    expect(env.DOCKER_HOST).toBe(`unix://${socket}`);
    expect((await job.outputs())['docker-host']).toBe(env.DOCKER_HOST);
    daemon = await daemonState(job);
    expect(daemon).toEqual(expect.objectContaining({ socket }));
    // The main step has exited; its daemon has not.
    expect(await isRunning(daemon.pid)).toBe(true);

    const docker = dockerIn(job, env);
    const version = await docker('version', '--format', '{{.Server.APIVersion}}');
    expect(version.stderr).toBe('');
    expect(version.stdout.trim()).toMatch(/^1\.\d+$/);
    const ps = await docker('ps', '--format', '{{.Names}} {{.State}}');
    expect(ps.stderr).toBe('');
    expect(ps.stdout.trim()).toBe('web running');

    const post = await job.step(POST, {});
    expect(post.exitCode).toBe(0);
    expect(post.stdout).not.toContain('::warning::');
    const stopped = post.stdout.indexOf(`hyper serve (pid ${daemon.pid}) stopped`);
    expect(stopped).toBeGreaterThan(-1);
    expect(stopped).toBeLessThan(post.stdout.indexOf('web: stopped'));
    expect(post.stdout).toContain('hyper serve: SIGTERM: stopping');
    expect(await isRunning(daemon.pid)).toBe(false);
    expect(await stat(socket).catch(() => undefined)).toBeUndefined();
    expect(await qemuProcessesUnder(job.dir)).toEqual([]);
    await expectNothingLeft(job);
  } finally {
    await killLeftover(daemon);
    await job.remove();
  }
});

test('a state dir too deep for a socket path puts the socket in a short dir of its own, which post removes', async () => {
  const job = await RunnerJob.create();
  // A Unix socket path has at most 107 bytes.
  const runnerTemp = path.join(job.runnerTemp, 'd'.repeat(100));
  await mkdir(runnerTemp, { recursive: true });
  let daemon: DaemonState | undefined;
  try {
    const main = await job.step(
      MAIN,
      { accel: 'tcg', 'docker-api': 'true', 'github-token': '' },
      { RUNNER_TEMP: runnerTemp },
    );
    expect(main.stdout).not.toContain('::error::');
    expect(main.exitCode).toBe(0);
    daemon = await daemonState(job);
    expect(daemon.socket).toMatch(/^\/tmp\/hyper-docker-[^/]+\/docker\.sock$/);
    expect(daemon.socketDir).toBe(path.dirname(daemon.socket));
    const env = await job.env();
    expect(env.DOCKER_HOST).toBe(`unix://${daemon.socket}`);

    const ps = await dockerIn(job, env)('ps', '-a', '-q');
    expect(ps.stderr).toBe('');
    expect(ps.stdout).toBe('');

    const post = await job.step(POST, {}, { RUNNER_TEMP: runnerTemp });
    expect(post.exitCode).toBe(0);
    expect(post.stdout).not.toContain('::warning::');
    expect(await isRunning(daemon.pid)).toBe(false);
    expect(await stat(daemon.socketDir as string).catch(() => undefined)).toBeUndefined();
    expect(await qemuProcessesUnder(job.dir)).toEqual([]);
  } finally {
    await killLeftover(daemon);
    await job.remove();
  }
});

test('a docker-api that is not a boolean fails the main step with a message naming the input', async () => {
  const job = await RunnerJob.create();
  try {
    const main = await job.step(MAIN, { 'docker-api': 'maybe' });
    expect(main.exitCode).toBe(1);
    expect(main.stdout).toContain('::error::input "docker-api": "maybe" is not a boolean; use true or false');
    expect(parseCommandFile(await readFile(job.file('state'), 'utf8'))['docker-api']).toBeUndefined();
  } finally {
    await job.remove();
  }
});
