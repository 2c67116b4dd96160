import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { execa } from 'execa';
import { projectRoot } from '../../src/project-root.js';
import { qemuProcessesUnder } from './cli.js';
import { busyboxLayout } from './fixtures.js';
import { pushLayout } from './registry/push-layout.js';
import { startRegistry, type TestRegistry } from './registry/registry.js';

/** Debian's docker.io client (scripts/install-host-deps); never a docker that may be elsewhere on PATH. */
export const DOCKER = '/usr/bin/docker';

export interface RunningDaemon {
  socket: string;
  /** The `hyper serve` process. */
  pid: number;
  stateDir: string;
  /** DOCKER_HOST and a config dir of its own, for the docker CLI. */
  env: Record<string, string>;
  /** What `hyper serve` wrote to stderr so far. */
  output(): string;
  /** Stops it with SIGTERM and waits for it to exit; its exit code. */
  stop(): Promise<number | null>;
}

/** One GET or HEAD on the daemon's socket. */
export function socketRequest(
  socket: string,
  method: string,
  urlPath: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        socketPath: socket,
        method,
        path: urlPath,
        headers: { ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: text }),
        );
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/**
 * Starts `hyper serve` from dist/ (what users run) on a socket of its own,
 * with the job's state in `stateDir`, and waits until it answers _ping.
 */
export async function startDaemon(
  stateDir: string,
  extraEnv: Record<string, string> = {},
  options: { socket?: string; allowBind?: readonly string[] } = {},
): Promise<RunningDaemon> {
  const dir = await mkdtemp('/tmp/hyper-serve-');
  // A socket elsewhere (a directory others may enter) when asked; the daemon makes its directory.
  const socket = options.socket ?? path.join(dir, 'docker.sock');
  let output = '';
  const child: ChildProcess = spawn(
    process.execPath,
    [
      path.join(projectRoot(), 'dist', 'cli', 'index.js'),
      'serve',
      '--socket',
      socket,
      '--debug',
      // The tests' bind sources are made under /tmp.
      ...(options.allowBind ?? ['/tmp']).flatMap((dir) => ['--allow-bind', dir]),
    ],
    {
      env: { ...process.env, HYPER_STATE_DIR: stateDir, ...extraEnv },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ping = await socketRequest(socket, 'GET', '/_ping').catch(() => undefined);
    if (ping?.status === 200) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`hyper serve did not come up:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    socket,
    pid: child.pid ?? 0,
    stateDir,
    env: { DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: path.join(dir, 'docker-config') },
    output: () => output,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const code = await exited;
      await rm(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** Runs the docker CLI against the daemon; never throws on a non-zero exit. */
export async function docker(
  daemon: RunningDaemon,
  args: string[],
  options: { input?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await execa(DOCKER, args, {
    env: { ...daemon.env, ...options.env },
    extendEnv: true,
    reject: false,
    ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
  });
  return { code: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** docker CLI that must succeed. */
export async function dockerOk(daemon: RunningDaemon, ...args: string[]): Promise<string> {
  const result = await docker(daemon, args);
  if (result.code !== 0)
    throw new Error(
      `docker ${args.join(' ')} exited ${result.code}:\n${result.stderr}\n--- hyper serve:\n${daemon.output().slice(-3000)}`,
    );
  return result.stdout;
}

export interface ApiFixture {
  registry: TestRegistry;
  /** The busybox httpd image in that registry. */
  image: string;
  stateDir: string;
  daemon: RunningDaemon;
}

/** A real registry holding the busybox httpd image, and `hyper serve` (TCG) on a fresh state dir. */
export async function startApiFixture(prefix: string, repository = 'demo/httpd'): Promise<ApiFixture> {
  const registry = await startRegistry();
  const image = await pushLayout(registry, await busyboxLayout(), repository, '1');
  const stateDir = await mkdtemp(prefix);
  const daemon = await startDaemon(stateDir, { HYPER_ACCEL: 'tcg' });
  return { registry, image, stateDir, daemon };
}

/**
 * Removes what the daemon still has, stops it (it must exit cleanly), checks
 * that no QEMU is left under its state, stops the registry and removes the
 * state dir.
 */
export async function stopApiFixture(fixture: Partial<ApiFixture>): Promise<void> {
  const { daemon, stateDir, registry } = fixture;
  if (daemon) {
    const leftover = (await docker(daemon, ['ps', '-a', '-q'])).stdout.split('\n').filter(Boolean);
    for (const id of leftover) await docker(daemon, ['rm', '-f', id]);
    const code = await daemon.stop();
    if (code !== 0) throw new Error(`hyper serve exited ${code}:\n${daemon.output().slice(-3000)}`);
  }
  if (stateDir) {
    const left = await qemuProcessesUnder(stateDir);
    if (left.length > 0) throw new Error(`QEMU left running under ${stateDir}: pids ${left.join(', ')}`);
    await rm(stateDir, { recursive: true, force: true });
  }
  await registry?.stop();
}
