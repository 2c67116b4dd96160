import type { Writable } from 'node:stream';
import { HyperError } from '../errors.js';
import type { Daemon } from './daemon.js';
import type { Exchange } from './exchange.js';
import { frame, STDERR, STDOUT } from './protocol.js';

const MULTIPLEXED = 'application/vnd.docker.multiplexed-stream';
/** Docker has no limit on an exec's run; a runner step may take hours. */
const EXEC_TIMEOUT_MS = 7 * 24 * 3600 * 1000;

interface ExecCreateBody {
  Cmd?: unknown;
  Env?: unknown;
  WorkingDir?: unknown;
  User?: unknown;
  AttachStdin?: unknown;
  Tty?: unknown;
  Privileged?: unknown;
}

function strings(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((entry) => typeof entry !== 'string'))
    throw new HyperError(`${field}: must be a list of strings`, { kind: 'Invalid' });
  return value as string[];
}

function text(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new HyperError(`${field}: must be a string`, { kind: 'Invalid' });
  return value;
}

/** POST /containers/{id}/exec. */
export async function createExec(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const body = ((await exchange.json()) ?? {}) as ExecCreateBody;
  if (typeof body !== 'object')
    throw new HyperError('the request body must be a JSON object', { kind: 'Invalid' });
  if (body.Tty === true)
    throw new HyperError('Tty: a terminal is not supported; the output comes as stdout and stderr', {
      kind: 'Invalid',
    });
  if (body.Privileged === true)
    throw new HyperError(
      'Privileged: privileged execs are not supported; the command runs as the container user asks, inside its VM',
      { kind: 'Invalid' },
    );
  const cmd = strings(body.Cmd, 'Cmd');
  if (cmd.length === 0) throw new HyperError('No exec command specified', { kind: 'Invalid' });
  const inspected = await daemon.job.inspect(ref).catch((error: unknown) => {
    if (error instanceof HyperError && error.kind === 'NotFound')
      throw new HyperError(`No such container: ${ref}`, { kind: 'NotFound' });
    throw error;
  });
  const id = inspected.record.id ?? inspected.record.name;
  if (!inspected.state.running) throw new HyperError(`Container ${id} is not running`, { kind: 'Conflict' });
  const exec = daemon.newExec({
    containerId: id,
    container: inspected.record.name,
    cmd,
    // A bare K (no value where the client ran) means unset; the container's own env is there already.
    env: strings(body.Env, 'Env').filter((entry) => entry.includes('=')),
    user: text(body.User, 'User'),
    workdir: text(body.WorkingDir, 'WorkingDir'),
    attachStdin: body.AttachStdin === true,
  });
  exchange.send(201, { Id: exec.id });
}

/**
 * POST /exec/{id}/start: the command's output as frames, as it comes; stdin
 * from the client (after its body) when the exec asked for it, ending at the
 * client's half-close. The exit code is set before the stream ends.
 */
export async function startExec(daemon: Daemon, exchange: Exchange, id: string): Promise<void> {
  const exec = daemon.requireExec(id);
  const body = ((await exchange.json()) ?? {}) as { Detach?: boolean; Tty?: boolean };
  if (body.Tty === true) throw new HyperError('Tty: a terminal is not supported', { kind: 'Invalid' });
  if (exec.running || exec.exitCode !== null)
    throw new HyperError(`Exec ${id} has already been started`, { kind: 'Conflict' });
  exec.running = true;
  const detach = body.Detach === true;
  const controller = new AbortController();
  let output: Writable | undefined;
  let stdin: AsyncIterable<Buffer> | undefined;
  let probe: NodeJS.Timeout | undefined;
  if (!detach) {
    const streams = exchange.hijack(MULTIPLEXED);
    output = streams.output;
    if (exec.attachStdin) stdin = streams.input as AsyncIterable<Buffer>;
    else streams.input.resume();
    // A client that hangs up takes the command with it.
    exchange.closed.addEventListener('abort', () => controller.abort(), { once: true });
  }
  try {
    const running = await daemon.job.execStream(exec.containerId, exec.cmd, {
      env: exec.env,
      user: exec.user,
      workdir: exec.workdir,
      stdin,
      signal: controller.signal,
      timeoutMs: EXEC_TIMEOUT_MS,
    });
    if (detach) {
      exchange.send(200);
      void drainDetached(running).then((code) => finish(exec, code));
      return;
    }
    let wrote = Date.now();
    const pump = async (source: AsyncIterable<Buffer>, stream: number): Promise<void> => {
      for await (const chunk of source) {
        if (controller.signal.aborted) continue;
        output?.write(frame(stream, chunk));
        wrote = Date.now();
      }
    };
    probe = probeClient(exchange, output, () => wrote);
    // Both read to their end (or failure) before anything is decided: no rejection left unheard.
    const pumped = await Promise.allSettled([pump(running.stdout, STDOUT), pump(running.stderr, STDERR)]);
    const failed = pumped.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    finish(exec, await running.exitCode);
  } catch (error: unknown) {
    finish(exec, 126);
    if (!output) throw error;
    // The stream has begun: the error goes to the client as its stderr, as Docker's does for a failed start.
    if (!controller.signal.aborted) output.write(frame(STDERR, Buffer.from(`${(error as Error).message}\n`)));
    daemon.log.debug(`exec ${exec.cmd.join(' ')} in ${exec.container}: ${(error as Error).message}`);
  } finally {
    clearInterval(probe);
    output?.end();
  }
}

/** How long an exec may be silent before the daemon checks that its docker CLI client is still there. */
const PROBE_MS = 2000;

/**
 * The docker CLI half-closes an exec's connection at once when it has no
 * stdin, so a client that dies later cannot be told from one that waits,
 * until something is written to it. For the docker CLI (Go's stdcopy takes
 * an empty frame as nothing), an empty frame goes out after each silent
 * PROBE_MS; a dead client then fails the write, and the command is killed.
 * Other clients (docker-modem stalls on an empty frame) get none.
 */
function probeClient(
  exchange: Exchange,
  output: Writable | undefined,
  lastWrite: () => number,
): NodeJS.Timeout | undefined {
  const agent = String(exchange.headers['user-agent'] ?? '');
  if (!output || !exchange.upgraded || !agent.startsWith('Docker-Client/')) return undefined;
  return setInterval(() => {
    if (Date.now() - lastWrite() >= PROBE_MS && !exchange.closed.aborted)
      output.write(frame(STDOUT, Buffer.alloc(0)));
  }, PROBE_MS).unref();
}

function finish(exec: { running: boolean; exitCode: number | null }, code: number): void {
  exec.running = false;
  exec.exitCode = code;
}

async function drainDetached(running: {
  stdout: AsyncIterable<Buffer>;
  stderr: AsyncIterable<Buffer>;
  exitCode: Promise<number>;
}): Promise<number> {
  const drain = async (source: AsyncIterable<Buffer>): Promise<void> => {
    for await (const _ of source) void _;
  };
  try {
    await Promise.all([drain(running.stdout), drain(running.stderr)]);
    return await running.exitCode;
  } catch {
    return 126;
  }
}

/** GET /exec/{id}/json. */
export function inspectExec(daemon: Daemon, exchange: Exchange, id: string): void {
  const exec = daemon.requireExec(id);
  exchange.send(200, {
    ID: exec.id,
    ContainerID: exec.containerId,
    Running: exec.running,
    ExitCode: exec.exitCode,
    Pid: 0,
    OpenStdin: exec.attachStdin,
    OpenStdout: true,
    OpenStderr: true,
    ProcessConfig: {
      entrypoint: exec.cmd[0],
      arguments: exec.cmd.slice(1),
      privileged: false,
      tty: false,
      user: exec.user ?? '',
    },
    CanRemove: false,
    DetachKeys: '',
  });
}
