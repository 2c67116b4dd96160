/**
 * Docker Engine API benchmark: one `hyper serve` (dist/cli/index.js, user
 * networking, TCG unless HYPER_ACCEL says otherwise, a temp state dir),
 * driven by real clients, against the same work done without the API, in the
 * same run. Medians over N runs of:
 *   one-shot: `docker run --rm --entrypoint /bin/true IMAGE` (Debian's docker
 *     CLI, DOCKER_HOST at the daemon) against `hyper run --rm --entrypoint
 *     /bin/true IMAGE` (a new CLI process); the demo's busybox image;
 *   Testcontainers: `new GenericContainer(redis).withExposedPorts(6379).start()`
 *     (Ryuk off) until `redis-cli ping` answers PONG on the mapped port, against
 *     redis-server as a plain host process until it answers (the floor);
 *   exec: `docker exec C /bin/true` in a running container against
 *     `hyper exec C -- /bin/true` (a new CLI process) in the same VM, and the
 *     same exec in this process (no Node start-up: the engine's own cost);
 *   the Docker socket inside a microVM: `docker inspect` of one container
 *     named NAMES times (NAMES API round trips through guest/hyper-relay.c
 *     in one CLI process) less `docker --version` (the CLI's own start-up,
 *     which under TCG dwarfs one call), over NAMES, run LOOP times inside the
 *     guest; against the same for the same CLI on the host, which talks to
 *     the daemon's socket directly.
 * Both images come from a local registry; they are pulled and their root
 * filesystems built before the first timed run.
 *
 * Usage: bench/run-ts api [--runs N]   (default 5). Prints figures; asserts nothing.
 */
import { execa } from 'execa';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { GenericContainer } from 'testcontainers';
import { formatRuns, machineLine, median } from './stats.js';
import { projectRoot } from '../src/project-root.js';
import { hyper, qemuProcessesUnder } from '../test/support/cli.js';
import { busyboxLayout, dockerCliLayout, serviceImageLayouts } from '../test/support/fixtures.js';
import { pushLayout } from '../test/support/registry/push-layout.js';
import { startRegistry } from '../test/support/registry/registry.js';
import { DOCKER, startDaemon, type RunningDaemon } from '../test/support/serve.js';

const HYPER_CLI = path.join(projectRoot(), 'dist', 'cli', 'index.js');
const EXEC_CONTAINER = 'bench-exec';
const SOCKET_CONTAINER = 'bench-socket';
/** docker CLI runs per timed loop. */
const LOOP = 3;
/** Containers named in one `docker inspect`: one API call each. */
const NAMES = 50;

/** ms per call of `docker ARGS` in a loop of LOOP, timed inside the guest by its own clock (10 ms steps). */
async function guestLoop(env: Record<string, string>, args: string): Promise<number> {
  // Busybox's date has no %N: /proc/uptime counts hundredths of a second.
  const script = `now() { read -r up _ < /proc/uptime; echo \${up%.*}\${up#*.}; }; s=$(now); i=0; while [ $i -lt ${LOOP} ]; do docker ${args} >/dev/null || exit 1; i=$((i+1)); done; echo $(( ($(now) - s) * 10 ))`;
  const result = await execa(DOCKER, ['exec', SOCKET_CONTAINER, 'sh', '-c', script], { env, reject: false });
  if (result.exitCode !== 0) throw new Error(`the guest loop docker ${args} failed:\n${result.stderr}`);
  return Number(result.stdout.trim()) / LOOP;
}

/** ms per call of `docker ARGS` on the host, in a loop of LOOP. */
async function hostLoop(env: Record<string, string>, args: string[]): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < LOOP; i++) await mustRun(DOCKER, args, env);
  return (performance.now() - start) / LOOP;
}

async function timed(action: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await action();
  return performance.now() - start;
}

/** A command that must exit 0; a failure shows its output. */
async function mustRun(program: string, args: string[], env: Record<string, string> = {}): Promise<void> {
  const result = await execa(program, args, { env, reject: false, stdin: 'ignore', all: true });
  if (result.exitCode !== 0)
    throw new Error(`${program} ${args.join(' ')} exited ${result.exitCode}:\n${result.all}`);
}

async function untilPong(host: string, port: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ping = await execa('redis-cli', ['-h', host, '-p', port, 'ping'], { reject: false, timeout: 5000 });
    if (ping.stdout === 'PONG') return;
    const last = `${ping.stdout}${ping.stderr}`.trim();
    if (Date.now() > deadline)
      throw new Error(`redis on ${host}:${port} did not answer PONG within ${timeoutMs} ms (last: ${last})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * redis-server from PATH, else Debian's redis-tools binary under that name:
 * the redis-server package's /usr/bin/redis-server is a symlink to
 * redis-check-rdb, which acts as the server unless argv[0] names a checker.
 */
async function redisServer(): Promise<{ program: string; argv0: string }> {
  const onPath = await execa('sh', ['-c', 'command -v redis-server'], { reject: false });
  if (onPath.exitCode === 0) return { program: onPath.stdout.trim(), argv0: 'redis-server' };
  return { program: '/usr/bin/redis-check-rdb', argv0: 'redis-server' };
}

/** redis-server as a host process, from spawn until it answers PONG; returns ms. */
async function hostRedis(port: string): Promise<number> {
  const { program, argv0 } = await redisServer();
  const start = performance.now();
  const server = execa(
    program,
    ['--port', port, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
    { argv0, reject: false },
  );
  try {
    await untilPong('127.0.0.1', port);
    return performance.now() - start;
  } finally {
    server.kill('SIGTERM');
    await server;
  }
}

/** A Testcontainers redis, from new GenericContainer to PONG on its mapped port; returns ms. */
async function testcontainersRedis(image: string): Promise<number> {
  const start = performance.now();
  const container = await new GenericContainer(image).withExposedPorts(6379).start();
  try {
    await untilPong(container.getHost(), String(container.getMappedPort(6379)));
    return performance.now() - start;
  } finally {
    await container.stop();
  }
}

/** Everything the daemon made goes: containers, the daemon (by its pid), any QEMU left, the job network. */
async function tearDown(daemon: RunningDaemon, stateDir: string): Promise<void> {
  const env = daemon.env;
  const ids = (await execa(DOCKER, ['ps', '-a', '-q'], { env, reject: false })).stdout
    .split('\n')
    .filter(Boolean);
  if (ids.length) await execa(DOCKER, ['rm', '-f', ...ids], { env, reject: false });
  const code = await daemon.stop();
  if (code !== 0) console.error(`hyper serve exited ${code}:\n${daemon.output().slice(-3000)}`);
  for (const pid of await qemuProcessesUnder(stateDir)) {
    console.error(`a QEMU was left under ${stateDir} (pid ${pid}); killing it`);
    process.kill(pid, 'SIGKILL');
  }
  await hyper('down', '--time', '0');
}

function ratio(of: readonly number[], to: readonly number[]): string {
  return `${(median(of) / median(to)).toFixed(2)}x`;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const runs = args[0] === '--runs' ? Number(args[1]) : 5;
  if (!Number.isInteger(runs) || runs < 1) throw new Error('usage: bench/run-ts api [--runs N]');
  process.env.HYPER_ACCEL = process.env.HYPER_ACCEL ?? 'tcg';
  process.env.HYPER_NETWORK = 'user';
  process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 'hyper-bench-api-'));
  process.env.HYPER_STATE_DIR = stateDir;
  const registry = await startRegistry({ auth: 'anonymous' });
  let daemon: RunningDaemon | undefined;
  const figures = {
    dockerRun: [] as number[],
    hyperRun: [] as number[],
    testcontainers: [] as number[],
    hostRedis: [] as number[],
    dockerExec: [] as number[],
    hyperExec: [] as number[],
    inProcessExec: [] as number[],
    guestCall: [] as number[],
    guestStartup: [] as number[],
    hostCall: [] as number[],
    hostStartup: [] as number[],
  };
  try {
    const busybox = await pushLayout(registry, await busyboxLayout(), 'bench/httpd', '1');
    const redis = await pushLayout(registry, (await serviceImageLayouts()).redis, 'bench/redis', '7');
    const cli = await pushLayout(registry, await dockerCliLayout(), 'bench/docker', 'cli');
    daemon = await startDaemon(stateDir, { HYPER_ACCEL: process.env.HYPER_ACCEL, HYPER_NETWORK: 'user' });
    const env = daemon.env;
    process.env.DOCKER_HOST = env.DOCKER_HOST;
    const dockerRun = () => mustRun(DOCKER, ['run', '--rm', '--entrypoint', '/bin/true', busybox], env);
    const hyperRun = () =>
      mustRun(process.execPath, [HYPER_CLI, 'run', '--rm', '--entrypoint', '/bin/true', busybox]);
    const inspect = ['inspect', '--format', '.', ...Array<string>(NAMES).fill(SOCKET_CONTAINER)];
    const dockerExec = () => mustRun(DOCKER, ['exec', EXEC_CONTAINER, '/bin/true'], env);
    const hyperExec = () => mustRun(process.execPath, [HYPER_CLI, 'exec', EXEC_CONTAINER, '--', '/bin/true']);
    const inProcessExec = async () => {
      const result = await hyper('exec', EXEC_CONTAINER, '--', '/bin/true');
      if (result.code !== 0) throw new Error(`hyper exec exited ${result.code}:\n${result.stderr}`);
    };

    // Pull both images and build their root filesystems outside the figures; a first exec of each kind.
    await mustRun(DOCKER, ['pull', busybox], env);
    await mustRun(DOCKER, ['pull', redis], env);
    await hyperRun();
    await dockerRun();
    await testcontainersRedis(redis);
    await mustRun(
      DOCKER,
      ['run', '-d', '--name', EXEC_CONTAINER, '--entrypoint', 'sleep', busybox, '600'],
      env,
    );
    await dockerExec();
    await hyperExec();
    await inProcessExec();
    await mustRun(
      DOCKER,
      [
        'run',
        '-d',
        '--name',
        SOCKET_CONTAINER,
        '-v',
        '/var/run/docker.sock:/var/run/docker.sock',
        cli,
        'sleep',
        '600',
      ],
      env,
    );
    await guestLoop(env, inspect.join(' '));

    for (let i = 0; i < runs; i++) {
      figures.dockerRun.push(await timed(dockerRun));
      figures.hyperRun.push(await timed(hyperRun));
      figures.testcontainers.push(await testcontainersRedis(redis));
      figures.hostRedis.push(await hostRedis('16479'));
      figures.dockerExec.push(await timed(dockerExec));
      figures.hyperExec.push(await timed(hyperExec));
      figures.inProcessExec.push(await timed(inProcessExec));
      figures.guestCall.push(await guestLoop(env, inspect.join(' ')));
      figures.guestStartup.push(await guestLoop(env, '--version'));
      figures.hostCall.push(await hostLoop(env, inspect));
      figures.hostStartup.push(await hostLoop(env, ['--version']));
      console.error(`run ${i + 1}/${runs} done`);
    }
  } finally {
    if (daemon) await tearDown(daemon, stateDir);
    await registry.stop();
    await rm(stateDir, { recursive: true, force: true });
  }

  const f = figures;
  console.log(`API benchmark: bench/run-ts api, ${runs} runs, ${new Date().toISOString()}`);
  console.log(
    `Machine: ${machineLine()}, kernel ${os.release()}, accel ${process.env.HYPER_ACCEL}, user network`,
  );
  console.log(`docker run --rm (API):           ${formatRuns(f.dockerRun)}`);
  console.log(`hyper run --rm (CLI, baseline):  ${formatRuns(f.hyperRun)}`);
  console.log(`  ratio API / CLI: ${ratio(f.dockerRun, f.hyperRun)}`);
  console.log(`Testcontainers redis, start to PONG: ${formatRuns(f.testcontainers)}`);
  console.log(`host redis-server, start to PONG:    ${formatRuns(f.hostRedis)}`);
  console.log(`  ratio Testcontainers / host: ${ratio(f.testcontainers, f.hostRedis)}`);
  console.log(`docker exec C /bin/true (API):          ${formatRuns(f.dockerExec)}`);
  console.log(`hyper exec C -- /bin/true (CLI):        ${formatRuns(f.hyperExec)}`);
  console.log(`hyper exec, in this process (no Node start-up): ${formatRuns(f.inProcessExec)}`);
  console.log(
    `  ratio API / CLI: ${ratio(f.dockerExec, f.hyperExec)}; API / in-process: ${ratio(f.dockerExec, f.inProcessExec)}`,
  );
  const apiCall = (calls: number[], startups: number[]) =>
    calls.map((call, i) => (call - (startups[i] ?? 0)) / NAMES);
  console.log(`Docker socket inside a microVM (loops of ${LOOP} CLI runs):`);
  console.log(`  guest docker inspect x${NAMES}: ${formatRuns(f.guestCall)}`);
  console.log(`  guest docker --version:    ${formatRuns(f.guestStartup)}`);
  console.log(`  host docker inspect x${NAMES}:  ${formatRuns(f.hostCall)}`);
  console.log(`  host docker --version:     ${formatRuns(f.hostStartup)}`);
  const guestApi = apiCall(f.guestCall, f.guestStartup);
  const hostApi = apiCall(f.hostCall, f.hostStartup);
  const fine = (values: number[]) =>
    `${median(values).toFixed(1)} ms  [${values.map((v) => v.toFixed(1)).join(' ')}]`;
  console.log(`  one inspect, guest through the relay: ${fine(guestApi)}`);
  console.log(`  one inspect, host on the socket:      ${fine(hostApi)}`);
  console.log(`  ratio relay / direct: ${ratio(guestApi, hostApi)}`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
