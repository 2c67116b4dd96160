import { randomBytes } from 'node:crypto';
import { HyperError } from '../errors.js';
import type { GuestAgent } from './guest-agent.js';
import type { ExecStream } from './hypervisor.js';

const POLL_MS = 50;
const READ_BYTES = 48 * 1024;

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
 * The guest side is plain qemu-ga: the command's stdout and stderr go to
 * files in the initramfs (outside the container), read as they grow with
 * guest-file-read; stdin, when given, is a FIFO the agent holds open
 * read-write (so a command that stops reading never breaks the agent with
 * SIGPIPE, and its non-blocking writes never hang it). `argv` runs through
 * /bin/sh only to set up those redirections; the argv itself is exec'd as given.
 */
export function execStream(
  agent: GuestAgent,
  argv: readonly string[],
  options: { stdin?: AsyncIterable<Buffer> | undefined; timeoutMs: number },
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

async function drive(
  agent: GuestAgent,
  argv: readonly string[],
  options: { stdin?: AsyncIterable<Buffer> | undefined; timeoutMs: number },
  stdout: ChunkQueue,
  stderr: ChunkQueue,
): Promise<number> {
  const dir = `/run/hyper-exec-${randomBytes(6).toString('hex')}`;
  const guestRun = async (script: string, ...args: string[]): Promise<void> => {
    const { pid } = (await agent.execute('guest-exec', {
      path: '/bin/sh',
      arg: ['-c', script, 'sh', ...args],
    })) as {
      pid: number;
    };
    for (;;) {
      const status = (await agent.execute('guest-exec-status', { pid })) as ExecStatus;
      if (status.exited) {
        if (status.exitcode !== 0)
          throw new HyperError(`cannot prepare the command's files in the guest (${dir})`);
        return;
      }
      await sleep(10);
    }
  };
  await guestRun(
    'mkdir -p "$1" && : > "$1/out" && : > "$1/err" && { [ -z "$2" ] || mkfifo "$1/in"; }',
    dir,
    options.stdin ? 'in' : '',
  );
  try {
    let input = options.stdin ? await openHandle(agent, `${dir}/in`, 'r+') : undefined;
    const stdin = collect(options.stdin);
    const script = `d=$1; shift; exec "$@" <${options.stdin ? '"$d/in"' : '/dev/null'} >"$d/out" 2>"$d/err"`;
    const { pid } = (await agent.execute('guest-exec', {
      path: '/bin/sh',
      arg: ['-c', script, 'sh', dir, ...argv],
    })) as { pid: number };
    const out = await openHandle(agent, `${dir}/out`, 'r');
    const err = await openHandle(agent, `${dir}/err`, 'r');
    const deadline = Date.now() + options.timeoutMs;
    // One request at a time: the agent's channel answers in order, so nothing here runs concurrently.
    for (;;) {
      const status = (await agent.execute('guest-exec-status', { pid })) as ExecStatus;
      // Read after the status: output written before the exit is all there once it says exited.
      let moved = (await drain(agent, out, stdout)) + (await drain(agent, err, stderr));
      if (input !== undefined) {
        moved += await write(agent, input, stdin.pending);
        if (status.exited || (stdin.done && stdin.pending.length === 0)) {
          await agent.execute('guest-file-close', { handle: input });
          input = undefined;
        }
      }
      if (status.exited) {
        for (const handle of [out, err]) await agent.execute('guest-file-close', { handle });
        return status.exitcode ?? 128 + (status.signal ?? 0);
      }
      if (Date.now() > deadline)
        throw new HyperError(`command still running after ${options.timeoutMs} ms: ${argv.join(' ')}`);
      if (moved === 0) await sleep(POLL_MS);
    }
  } finally {
    await guestRun('rm -rf "$1"', dir).catch(() => undefined);
  }
}

async function openHandle(agent: GuestAgent, path: string, mode: string): Promise<number> {
  return (await agent.execute('guest-file-open', { path, mode })) as number;
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

/** What the caller's stdin has given so far, gathered in the background (no agent request is made here). */
function collect(source: AsyncIterable<Buffer> | undefined): { pending: Buffer[]; done: boolean } {
  const state = { pending: [] as Buffer[], done: source === undefined };
  if (source) {
    void (async () => {
      try {
        for await (const chunk of source) state.pending.push(chunk);
      } finally {
        state.done = true;
      }
    })().catch(() => undefined);
  }
  return state;
}

/** Writes pending stdin into the FIFO as far as the pipe takes it (it is non-blocking); returns the bytes written. */
async function write(agent: GuestAgent, handle: number, pending: Buffer[]): Promise<number> {
  let total = 0;
  while (pending.length > 0) {
    const chunk = pending[0] as Buffer;
    const part = chunk.subarray(0, READ_BYTES);
    const written = (await agent
      .execute('guest-file-write', { handle, 'buf-b64': part.toString('base64') })
      .catch(() => ({ count: 0 }))) as { count: number };
    if (written.count === 0) return total;
    total += written.count;
    if (written.count >= chunk.length) pending.shift();
    else pending[0] = chunk.subarray(written.count);
  }
  return total;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
