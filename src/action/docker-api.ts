import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { terminate } from '../process/pids.js';
import type { DockerApiState } from './state.js';

/** sun_path holds 108 bytes, the terminating NUL included. */
const SOCKET_PATH_MAX_BYTES = 107;
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;
const KILL_TIMEOUT_MS = 5_000;
const POLL_MS = 100;
const PING_TIMEOUT_MS = 2_000;
const ERROR_LOG_CHARS = 3_000;

export interface DockerApiLog {
  info: (line: string) => void;
  warn: (line: string) => void;
}

/**
 * `hyper serve`'s command line for node: the CLI bundle, the socket, the
 * directories the job's containers may bind-mount, and --debug when asked. Pure.
 */
export function serveArgs(
  cli: string,
  socket: string,
  debug: boolean,
  allowBinds: readonly string[] = [],
): string[] {
  return [
    cli,
    'serve',
    '--socket',
    socket,
    ...allowBinds.flatMap((dir) => ['--allow-bind', dir]),
    ...(debug ? ['--debug'] : []),
  ];
}

/**
 * What a job's containers may bind-mount: the runner's work directory (the
 * parent of RUNNER_WORKSPACE, which holds the workspace, _temp, _actions and
 * _tool), RUNNER_TEMP and the tool cache, wherever the runner put them. Pure.
 */
export function runnerBindRoots(env: NodeJS.ProcessEnv): string[] {
  const dirs = [
    env.RUNNER_WORKSPACE ? path.dirname(env.RUNNER_WORKSPACE) : undefined,
    env.RUNNER_TEMP,
    env.RUNNER_TOOL_CACHE,
  ];
  return [...new Set(dirs.filter((dir): dir is string => Boolean(dir && path.isAbsolute(dir))))];
}

/** Whether a Unix socket can be bound at `file`. Pure. */
export function socketPathFits(file: string): boolean {
  return Buffer.byteLength(file) <= SOCKET_PATH_MAX_BYTES;
}

/** The socket goes in the state dir, or in a fresh short dir when the state dir's path is too long for one. */
async function placeSocket(stateDir: string): Promise<{ socket: string; socketDir?: string }> {
  const socket = path.join(stateDir, 'docker.sock');
  if (socketPathFits(socket)) return { socket };
  // RUNNER_TEMP holds the state dir, so it is no shorter: /tmp, with a random name so jobs sharing a host never meet.
  const socketDir = await mkdtemp('/tmp/hyper-docker-');
  return { socket: path.join(socketDir, 'docker.sock'), socketDir };
}

/** The end of the daemon's log, for an error or the post step's log. */
export async function logTail(file: string, chars: number): Promise<string> {
  const text = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (!text) return '(it wrote nothing)';
  return text.length > chars ? `...${text.slice(-chars)}` : text;
}

/** One GET /_ping: undefined when it answers 200, else what was seen instead. */
function ping(socket: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    // No keep-alive agent: a pooled connection would hold the main step's process open.
    const request = http.get(
      { socketPath: socket, path: '/_ping', agent: false, timeout: PING_TIMEOUT_MS },
      (response) => {
        response.resume();
        resolve(response.statusCode === 200 ? undefined : `HTTP ${response.statusCode}`);
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${PING_TIMEOUT_MS} ms`)));
    request.on('error', (error) => resolve(error.message));
  });
}

export interface DockerApiStart {
  /** dist/cli/index.js of this action. */
  cli: string;
  /** The job's state dir: the daemon serves its VMs, and keeps its log (and, when the path allows, its socket) there. */
  stateDir: string;
  /** The daemon's environment: HYPER_STATE_DIR and the job's other HYPER_* settings. */
  env: NodeJS.ProcessEnv;
  debug: boolean;
  /** Told as soon as the daemon has a pid, so that post stops it even when it never answers. */
  started: (state: DockerApiState) => void;
}

/**
 * Starts `hyper serve` as a detached process that outlives the main step,
 * and waits until it answers GET /_ping on its socket.
 */
export async function startDockerApi(options: DockerApiStart): Promise<DockerApiState> {
  const { socket, socketDir } = await placeSocket(options.stateDir);
  const log = path.join(options.stateDir, 'docker-api.log');
  const output = await open(log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      process.execPath,
      serveArgs(options.cli, socket, options.debug, runnerBindRoots(process.env)),
      {
        detached: true,
        stdio: ['ignore', output.fd, output.fd],
        env: options.env,
      },
    );
  } finally {
    // The child holds its own copy of the descriptor.
    await output.close();
  }
  let ended: string | undefined;
  child.once(
    'exit',
    (code, signal) => (ended = signal ? `was killed by ${signal}` : `exited with code ${code}`),
  );
  child.unref();
  if (child.pid === undefined) {
    const [error] = (await once(child, 'error')) as [Error];
    throw new Error(`hyper serve could not be started: ${error.message}`);
  }
  const state: DockerApiState = { pid: child.pid, socket, log, ...(socketDir ? { socketDir } : {}) };
  options.started(state);

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const seen = await ping(socket);
    if (seen === undefined) return state;
    if (ended) {
      throw new Error(
        `hyper serve ${ended} before it answered GET /_ping on ${socket}; the end of its log (${log}):\n${await logTail(log, ERROR_LOG_CHARS)}`,
      );
    }
    if (Date.now() >= deadline) {
      child.kill('SIGKILL');
      throw new Error(
        `hyper serve did not answer GET /_ping on ${socket} within ${READY_TIMEOUT_MS / 1000} s (last: ${seen}); it was killed; the end of its log (${log}):\n${await logTail(log, ERROR_LOG_CHARS)}`,
      );
    }
    await sleep(POLL_MS);
  }
}

/** Stops the daemon (SIGTERM, then SIGKILL after 20 s) and removes its socket. Safe to repeat. */
export async function stopDockerApi(state: DockerApiState, log: DockerApiLog): Promise<void> {
  try {
    // Its command line names its socket: a recycled pid is never signalled.
    const ended = await terminate(state.pid, state.socket, STOP_TIMEOUT_MS, KILL_TIMEOUT_MS).catch(
      (error: unknown) => {
        throw new Error(`hyper serve (pid ${state.pid}): ${(error as Error).message}`);
      },
    );
    if (ended === 'already gone') log.info(`hyper serve (pid ${state.pid}) had already exited`);
    else if (ended === 'stopped') log.info(`hyper serve (pid ${state.pid}) stopped`);
    else
      log.warn(
        `hyper serve (pid ${state.pid}) did not stop within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM; it was killed`,
      );
  } finally {
    await rm(state.socket, { force: true });
    if (state.socketDir) await rm(state.socketDir, { recursive: true, force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
