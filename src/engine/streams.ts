import { open } from 'node:fs/promises';
import { HyperError } from '../errors.js';
import { execArgv } from '../guest/config.js';
import type { ExecStream } from '../vm/hypervisor.js';
import { LogDecoder, type LogRecord } from '../vm/log-records.js';
import { vmPaths } from '../vm/paths.js';
import { sleep } from '../process/pids.js';
import { requireRecord, stateOnceStopped, vmState } from './container.js';
import type { JobContext } from './context.js';
import type { VmRecord } from './record.js';

const CHUNK = 64 * 1024;
const FOLLOW_POLL_MS = 100;
const QEMU_EXIT_WAIT_MS = 5000;

/**
 * The service's output, stdout and stderr records in the order the guest read
 * them; with `follow`, it goes on until the VM has stopped and everything it
 * wrote has been read (docker logs -f).
 */
export async function* containerLogs(
  name: string,
  job: JobContext,
  options: { follow?: boolean; signal?: AbortSignal | undefined } = {},
): AsyncGenerator<LogRecord> {
  const log = await openServiceLog(name, job);
  yield* options.follow ? log.follow(options.signal) : log.read();
}

/** The service's log of `name`, read on from where the last read stopped. */
export async function openServiceLog(name: string, job: JobContext): Promise<ServiceLog> {
  return new ServiceLog(await requireRecord(job, name), job);
}

/**
 * One reader's place in a service's log: what was there (`read`) and then
 * what comes (`follow`) are taken from one offset, so a record written in
 * between is given once, neither lost nor repeated.
 */
export class ServiceLog {
  private readonly decoder = new LogDecoder();
  private offset = 0;

  constructor(
    private readonly record: VmRecord,
    private readonly job: Pick<JobContext, 'hypervisor'>,
  ) {}

  /** The records written since the last read, up to the log's end as it is now. */
  async *read(): AsyncGenerator<LogRecord> {
    const file = vmPaths(this.record.machine.dir).serviceLog;
    for await (const chunk of readFrom(file, this.offset)) {
      this.offset += chunk.length;
      yield* this.decoder.push(chunk);
    }
  }

  /** Passes over what is written so far (read, so a record cut at the end is completed later, but not given). */
  async skip(): Promise<void> {
    for await (const _ of this.read()) void _;
  }

  /** The records from here on, until the VM has stopped and all it wrote is read, or `signal` aborts. */
  async *follow(signal?: AbortSignal): AsyncGenerator<LogRecord> {
    for (;;) {
      // Checked before reading, so output written just before the stop is still read after it.
      const stopped = await hasStopped(this.record, this.job);
      yield* this.read();
      // Following ends with the VM, or when the reader goes away (a client that hung up).
      if (stopped || signal?.aborted) return;
      await sleep(FOLLOW_POLL_MS);
    }
  }
}

/**
 * The service has ended and QEMU has written all it will: the guest reports
 * the exit on another port than the output, so the output is complete only
 * once QEMU is gone (the init powers off right after), or a while after.
 */
async function hasStopped(record: VmRecord, job: Pick<JobContext, 'hypervisor'>): Promise<boolean> {
  if ((await vmState(record, job)).running) return false;
  const deadline = Date.now() + QEMU_EXIT_WAIT_MS;
  while (Date.now() < deadline && (await job.hypervisor.isRunning(record.machine))) await sleep(50);
  return true;
}

async function* readFrom(file: string, offset: number): AsyncGenerator<Buffer> {
  const handle = await open(file, 'r').catch(() => undefined);
  if (!handle) return;
  try {
    for (let at = offset; ;) {
      const buffer = Buffer.alloc(CHUNK);
      const { bytesRead } = await handle.read(buffer, 0, CHUNK, at);
      if (bytesRead === 0) return;
      at += bytesRead;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

/** The whole log as text (for summaries and failure reports). */
export async function logText(name: string, job: JobContext): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const record of containerLogs(name, job)) chunks.push(record.data);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Runs a command in the running container with its stdout and stderr
 * streamed as they come and `stdin`, when given, fed to it (docker exec -i).
 */
export async function execStreamInContainer(
  name: string,
  command: string[],
  job: JobContext,
  options: {
    env?: string[];
    timeoutMs?: number;
    user?: string | undefined;
    workdir?: string | undefined;
    stdin?: AsyncIterable<Buffer> | undefined;
    /** Aborting it kills the command (a client that went away). */
    signal?: AbortSignal | undefined;
  } = {},
): Promise<ExecStream> {
  const record = await requireRecord(job, name);
  const state = await vmState(record, job);
  if (!state.running) {
    const code = state.exitCode === undefined ? '' : ` (exited with code ${state.exitCode})`;
    throw new HyperError(`cannot exec in "${name}": the VM is not running${code}`, { kind: 'Conflict' });
  }
  if (command.length === 0)
    throw new HyperError('no command given: hyper exec NAME -- CMD [ARG...]', { kind: 'Invalid' });
  const argv = execArgv(
    { user: options.user ?? record.user, workdir: options.workdir ?? record.workdir },
    command,
    options.env ?? [],
  );
  const running = await job.hypervisor.execStream(record.machine, argv, {
    stdin: options.stdin,
    signal: options.signal,
    timeoutMs: options.timeoutMs ?? 10 * 60 * 1000,
  });
  const exitCode = running.exitCode.catch(async (error: unknown) => {
    const ended = await stateOnceStopped(record, job, 15_000);
    if (!ended) throw error;
    const why =
      ended.crash ?? (ended.exitCode === undefined ? 'it stopped' : `exited with code ${ended.exitCode}`);
    throw new HyperError(`"${name}" stopped while the command ran (${why})`, { cause: error });
  });
  exitCode.catch(() => undefined);
  return { ...running, exitCode };
}
