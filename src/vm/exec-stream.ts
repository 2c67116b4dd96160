import { randomBytes } from 'node:crypto';
import { HyperError } from '../errors.js';
import type { GuestAgent } from './guest-agent.js';
import type { ExecStream } from './hypervisor.js';

const POLL_MS = 50;
const READ_BYTES = 48 * 1024;
/** For the setup and clean-up scripts, which do nothing that takes long. */
const SCRIPT_TIMEOUT_MS = 30_000;

/** Chunks pushed by one producer, read by one consumer as an async iterable. */
class ChunkQueue implements AsyncIterable<Buffer> {
  private chunks: Buffer[] = [];
  private ended = false;
  private failure: unknown;
  private wake: (() => void) | undefined;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.wake?.();
  }

  end(failure?: unknown): void {
    this.ended = true;
    this.failure = failure;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      const chunk = this.chunks.shift();
      if (chunk) {
        yield chunk;
        continue;
      }
      if (this.ended) {
        if (this.failure) throw this.failure;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

/**
 * The guest side is plain qemu-ga and busybox: the command's stdout and
 * stderr go to files in the initramfs (outside the container), read as they
 * grow with guest-file-read; stdin, when given, is appended to a regular file
 * (so every write completes and is flushed at once), which a small guest
 * loop (FEED) copies into the command through a FIFO. `argv` runs through
 * /bin/sh only to set up those redirections; the argv itself is exec'd.
 */
export function execStream(
  agent: GuestAgent,
  argv: readonly string[],
  options: { stdin?: AsyncIterable<Buffer> | undefined; timeoutMs: number; signal?: AbortSignal | undefined },
): ExecStream {
  const stdout = new ChunkQueue();
  const stderr = new ChunkQueue();
  const exitCode = drive(agent, argv, options, stdout, stderr).then(
    (code) => {
      stdout.end();
      stderr.end();
      return code;
    },
    (error: unknown) => {
      stdout.end(error);
      stderr.end(error);
      throw error;
    },
  );
  // The caller reads the failure from the output streams or from exitCode, whichever it awaits.
  exitCode.catch(() => undefined);
  return { stdout, stderr, exitCode };
}

type ExecStatus = { exited: boolean; exitcode?: number; signal?: number };

/**
 * Copies the stdin file to its stdout as it grows, until the host marks it
 * done (in.done) and all of it is copied, or the file is gone. The command
 * reads it through a FIFO; a command that stops reading ends the copy with
 * SIGPIPE.
 */
const FEED = `d=$1; shift
feed() {
  off=0
  while :; do
    size=$(wc -c < "$d/in" 2>/dev/null) || return 0
    if [ "$size" -gt "$off" ]; then
      tail -c +$((off + 1)) "$d/in" | head -c $((size - off)) || return 0
      off=$size
    elif [ -e "$d/in.done" ]; then
      [ "$(wc -c < "$d/in" 2>/dev/null || echo 0)" -gt "$off" ] || return 0
    else
      usleep 20000
    fi
  done
}
mkfifo "$d/pipe"
feed > "$d/pipe" &
exec setsid "$@" < "$d/pipe" > "$d/out" 2> "$d/err"`;
const NO_STDIN = 'd=$1; shift; exec setsid "$@" </dev/null >"$d/out" 2>"$d/err"';

async function drive(
  agent: GuestAgent,
  argv: readonly string[],
  options: { stdin?: AsyncIterable<Buffer> | undefined; timeoutMs: number; signal?: AbortSignal | undefined },
  stdout: ChunkQueue,
  stderr: ChunkQueue,
): Promise<number> {
  const dir = `/run/hyper-exec-${randomBytes(6).toString('hex')}`;
  await runToEnd(agent, 'mkdir -p "$1" && : > "$1/out" && : > "$1/err" && : > "$1/in"', dir);
  const handles = new Set<number>();
  const open = async (name: string, mode: string): Promise<number> => {
    const handle = (await agent.execute('guest-file-open', { path: `${dir}/${name}`, mode })) as number;
    handles.add(handle);
    return handle;
  };
  const close = async (handle: number): Promise<void> => {
    handles.delete(handle);
    await agent.execute('guest-file-close', { handle });
  };
  const stdin = collect(options.stdin);
  let pid: number | undefined;
  let exited = false;
  try {
    let input = options.stdin ? await open('in', 'a') : undefined;
    pid = (
      (await agent.execute('guest-exec', {
        path: '/bin/sh',
        arg: ['-c', options.stdin ? FEED : NO_STDIN, 'sh', dir, ...argv],
      })) as { pid: number }
    ).pid;
    const out = await open('out', 'r');
    const err = await open('err', 'r');
    const deadline = Date.now() + options.timeoutMs;
    // Each request takes its own turn on the agent, shared by every user of this VM: between them, theirs run.
    for (;;) {
      const status = (await agent.execute('guest-exec-status', { pid })) as ExecStatus;
      exited = status.exited;
      // Read after the status: output written before the exit is all there once it says exited.
      let moved = (await drain(agent, out, stdout)) + (await drain(agent, err, stderr));
      if (input !== undefined) {
        moved += await write(agent, input, stdin.pending);
        if (status.exited || (stdin.done && stdin.pending.length === 0)) {
          await close(input);
          input = undefined;
          await close(await open('in.done', 'w'));
        }
      }
      if (status.exited) return status.exitcode ?? 128 + (status.signal ?? 0);
      // The caller went away (a client that hung up): the command is killed below.
      if (options.signal?.aborted) throw new HyperError(`cancelled: ${argv.join(' ')}`);
      if (Date.now() > deadline)
        throw new HyperError(`command still running after ${options.timeoutMs} ms: ${argv.join(' ')}`);
      if (moved === 0) await sleep(POLL_MS);
    }
  } finally {
    stdin.stop();
    // Whatever happened: no handle left open in the agent, no command left running, no files left.
    for (const handle of handles) await agent.execute('guest-file-close', { handle }).catch(() => undefined);
    if (pid !== undefined && !exited)
      // setsid made the command its own process group: what it started in the background goes with it.
      await runToEnd(agent, 'kill -KILL -"$1" 2>/dev/null || kill -KILL "$1"', String(pid)).catch(
        () => undefined,
      );
    await runToEnd(agent, 'rm -rf "$1"', dir).catch(() => undefined);
  }
}

/** Runs a small shell script in the guest (outside the container) to its end; fails unless it exits 0. */
async function runToEnd(agent: GuestAgent, script: string, ...args: string[]): Promise<void> {
  const result = await agent.exec('/bin/sh', ['-c', script, 'sh', ...args], SCRIPT_TIMEOUT_MS);
  if (result.exitCode !== 0)
    throw new HyperError(`guest command failed (${script}): ${result.stderr.toString().trim()}`);
}

/** Reads what the file holds beyond what was read; returns the bytes read. */
async function drain(agent: GuestAgent, handle: number, into: ChunkQueue): Promise<number> {
  let total = 0;
  for (;;) {
    const read = (await agent.execute('guest-file-read', { handle, count: READ_BYTES })) as {
      count: number;
      'buf-b64': string;
    };
    if (read.count === 0) return total;
    into.push(Buffer.from(read['buf-b64'], 'base64'));
    total += read.count;
  }
}

const MAX_PENDING = 1024 * 1024;

/**
 * The caller's stdin, gathered in the background without any agent request,
 * at most about MAX_PENDING ahead of what was written; stop() ends the
 * reading (for process.stdin: the process can then exit).
 */
function collect(source: AsyncIterable<Buffer> | undefined): {
  pending: Buffer[];
  done: boolean;
  stop(): void;
} {
  const iterator = source?.[Symbol.asyncIterator]();
  const state = {
    pending: [] as Buffer[],
    done: iterator === undefined,
    stopped: false,
    stop(): void {
      state.stopped = true;
      void iterator?.return?.()?.catch(() => undefined);
    },
  };
  if (iterator) {
    void (async () => {
      try {
        while (!state.stopped) {
          while (!state.stopped && state.pending.reduce((sum, b) => sum + b.length, 0) > MAX_PENDING)
            await sleep(POLL_MS);
          const next = await iterator.next();
          if (next.done) break;
          state.pending.push(next.value);
        }
      } finally {
        state.done = true;
      }
    })().catch(() => undefined);
  }
  return state;
}

/** Appends pending stdin to the guest's stdin file and flushes it (a regular file: every write completes). */
async function write(agent: GuestAgent, handle: number, pending: Buffer[]): Promise<number> {
  let total = 0;
  while (pending.length > 0) {
    const chunk = pending.shift() as Buffer;
    for (let at = 0; at < chunk.length; at += READ_BYTES) {
      const part = chunk.subarray(at, at + READ_BYTES);
      await agent.execute('guest-file-write', { handle, 'buf-b64': part.toString('base64') });
      total += part.length;
    }
  }
  if (total > 0) await agent.execute('guest-file-flush', { handle });
  return total;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
