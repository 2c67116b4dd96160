import { checkShares, confineBinds } from './bind-policy.js';
import { setTimeout as delay } from 'node:timers/promises';
import { HyperError } from '../errors.js';
import type { VmRecord } from '../engine/record.js';
import type { VmState } from '../engine/container.js';
import type { Writable } from 'node:stream';
import { containerFromCreateBody, type CreateBody } from '../spec/docker-create.js';
import type { Daemon } from './daemon.js';
import type { Exchange } from './exchange.js';
import { frame, labelsMatch, parseFilters, STDERR, STDOUT, containerName } from './protocol.js';
import type { LogRecord } from '../vm/log-records.js';
import {
  containerInspect,
  containerSummary,
  dockerState,
  exitCodeOf,
  isCreated,
  type ContainerExtra,
} from './views.js';

const MULTIPLEXED = 'application/vnd.docker.multiplexed-stream';
/** Docker's default for stop and restart without ?t=. */
const DEFAULT_STOP_SECONDS = 10;

function flag(exchange: Exchange, name: string): boolean {
  const value = exchange.url.searchParams.get(name);
  return value !== null && value !== '' && value !== '0' && value.toLowerCase() !== 'false';
}

function seconds(exchange: Exchange, name: string, fallback: number): number {
  const text = exchange.url.searchParams.get(name);
  if (text === null || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value))
    throw new HyperError(`${name}: "${text}" is not a whole number of seconds`, { kind: 'Invalid' });
  return value < 0 ? 0 : value;
}

async function extraFor(daemon: Daemon, record: VmRecord): Promise<ContainerExtra> {
  const id = record.id ?? record.name;
  return {
    autoRemove: daemon.autoRemove.has(id),
    finishedAt: daemon.finishedAt.get(id),
    address: await daemon.job.address(record.name),
  };
}

/** Docker's "No such container" for the references the job does not know. */
async function requireContainer(daemon: Daemon, ref: string) {
  try {
    return await daemon.job.inspect(ref);
  } catch (error: unknown) {
    if (error instanceof HyperError && error.kind === 'NotFound')
      throw new HyperError(`No such container: ${ref}`, { kind: 'NotFound' });
    throw error;
  }
}

export async function createContainer(daemon: Daemon, exchange: Exchange): Promise<void> {
  const body = (await exchange.json()) as CreateBody | undefined;
  const given = exchange.url.searchParams.get('name');
  const name = given ? given.replace(/^\//, '') : containerName();
  const parsed = containerFromCreateBody(body ?? ({} as CreateBody), name, '/');
  const request = { ...parsed, spec: await confineBinds(parsed.spec, daemon.binds) };
  if (request.network) await daemon.job.network(request.network);
  await daemon.prepare();
  const aliases = request.spec.aliases ?? [];
  let record: VmRecord;
  try {
    record = await daemon.job.create(request.spec, {
      log: (line) => daemon.log.debug(`${name}: ${line}`),
      networks: request.network ? { [request.network]: { aliases } } : undefined,
    });
  } catch (error: unknown) {
    // Docker's wording, which clients match on.
    if (error instanceof HyperError && error.kind === 'Conflict' && /already in use/.test(error.message))
      throw new HyperError(`Conflict. The container name "/${name}" is already in use. ${error.message}`, {
        kind: 'Conflict',
      });
    throw error;
  }
  const id = record.id ?? record.name;
  if (request.autoRemove) daemon.autoRemove.add(id);
  daemon.emit('create', record);
  exchange.send(201, { Id: id, Warnings: request.warnings });
}

export async function startContainer(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const { record, state } = await requireContainer(daemon, ref);
  if (state.running) return exchange.send(304);
  await daemon.prepare();
  await checkShares(record.machine.shares ?? [], daemon.binds);
  const started = await daemon.job.start(record.name);
  daemon.started.add(started.id ?? started.name);
  daemon.emit('start', started);
  daemon.watch(started);
  exchange.send(204);
}

export async function stopContainer(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const { record, state } = await requireContainer(daemon, ref);
  if (!state.running) return exchange.send(304);
  const graceMs = seconds(exchange, 't', DEFAULT_STOP_SECONDS) * 1000;
  await daemon.job.stop(record.name, graceMs);
  daemon.emit('stop', record);
  exchange.send(204);
}

export async function killContainer(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const { record, state } = await requireContainer(daemon, ref);
  const signal = exchange.url.searchParams.get('signal') || 'KILL';
  if (!/^(SIG)?KILL$|^9$/i.test(signal))
    throw new HyperError(`signal ${signal}: only KILL is supported; use stop for a graceful stop`, {
      kind: 'Invalid',
    });
  if (!state.running)
    throw new HyperError(`Container ${record.id ?? record.name} is not running`, { kind: 'Conflict' });
  await daemon.job.kill(record.name);
  daemon.emit('kill', record);
  exchange.send(204);
}

export async function restartContainer(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const { record, state } = await requireContainer(daemon, ref);
  const id = record.id ?? record.name;
  if (state.running) {
    daemon.unwatch(id);
    await daemon.job.stop(record.name, seconds(exchange, 't', DEFAULT_STOP_SECONDS) * 1000);
    await daemon.job.wait(record.name);
  }
  await daemon.prepare();
  await checkShares(record.machine.shares ?? [], daemon.binds);
  const started = await daemon.job.start(record.name);
  daemon.emit('restart', started);
  daemon.watch(started);
  exchange.send(204);
}

export async function waitContainer(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const condition = exchange.url.searchParams.get('condition') || 'not-running';
  if (!['not-running', 'next-exit', 'removed'].includes(condition))
    throw new HyperError(`invalid condition: "${condition}"`, { kind: 'Invalid' });
  const { record, state } = await requireContainer(daemon, ref);
  const id = record.id ?? record.name;
  // The answer's headers go at once (docker run waits on it before it starts the container).
  const output = exchange.stream('application/json');
  const answer = (code: number, error?: string): void => {
    output.end(`${JSON.stringify({ StatusCode: code, ...(error ? { Error: { Message: error } } : {}) })}\n`);
  };
  try {
    if (condition !== 'not-running' || !state.running) {
      if (isCreated(state) || condition === 'next-exit' || condition === 'removed')
        await untilStarted(daemon, record, exchange.closed);
    }
    const ended = await daemon.untilStopped(id, exchange.closed);
    // The client went away (docker run -d leaves its wait behind): nothing to answer.
    if (!ended) return;
    const code = ended.crash ? 255 : (ended.exitCode ?? 255);
    if (condition === 'removed') {
      while (!exchange.closed.aborted && (await stillThere(daemon, record))) await delay(100);
      return answer(daemon.removedExits.get(id) ?? code);
    }
    answer(code);
  } catch (error: unknown) {
    if (!exchange.closed.aborted) answer(255, (error as Error).message);
  }
}

/** Whether the container is still there: one record read, not the whole job's list. */
async function stillThere(daemon: Daemon, record: VmRecord): Promise<boolean> {
  return daemon.job.inspect(record.id ?? record.name).then(
    () => true,
    () => false,
  );
}

/** Until the created container has been started (docker run: wait is asked for before start). */
async function untilStarted(daemon: Daemon, record: VmRecord, closed: AbortSignal): Promise<void> {
  for (;;) {
    if (closed.aborted) throw new HyperError('the client went away');
    const current = await daemon.job.inspect(record.id ?? record.name).catch(() => undefined);
    if (!current) return;
    if (!isCreated(current.state)) return;
    await delay(100);
  }
}

export async function removeContainer(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const { record, state } = await requireContainer(daemon, ref);
  const id = record.id ?? record.name;
  if (state.running && !flag(exchange, 'force'))
    throw new HyperError(
      `You cannot remove a running container ${id}. Stop the container before attempting removal or force remove`,
      { kind: 'Conflict' },
    );
  daemon.unwatch(id);
  await daemon.job.remove(record.name, true);
  daemon.autoRemove.delete(id);
  daemon.started.delete(id);
  daemon.emit('destroy', record);
  exchange.send(204);
}

export async function listContainers(daemon: Daemon, exchange: Exchange): Promise<void> {
  const all = flag(exchange, 'all');
  const filters = parseFilters(exchange.url.searchParams.get('filters'));
  const limitText = exchange.url.searchParams.get('limit');
  const limit = limitText ? Number(limitText) : -1;
  const networks = await daemon.job.networks();
  const now = Date.now();
  const rows: Record<string, unknown>[] = [];
  const summaries = await daemon.job.list();
  summaries.sort((a, b) => Date.parse(b.record.createdAt) - Date.parse(a.record.createdAt));
  for (const { record, state } of summaries) {
    const status = dockerState(state);
    if (!all && !filters.status && status !== 'running') continue;
    if (!matches(record, status, exitCodeOf(state), filters)) continue;
    const { health } = await daemon.job.inspect(record.name).catch(() => ({ health: undefined }));
    rows.push(containerSummary(record, state, health, networks, await extraFor(daemon, record), now));
    if (limit > 0 && rows.length >= limit) break;
  }
  exchange.send(200, rows);
}

/** Docker's container filters: label, id, name, status, exited, network, ancestor. */
function matches(
  record: VmRecord,
  status: string,
  exitCode: number,
  filters: Record<string, string[]>,
): boolean {
  for (const [key, values] of Object.entries(filters)) {
    if (values.length === 0) continue;
    const ok = (() => {
      switch (key) {
        case 'label':
          return labelsMatch(record.labels, values);
        case 'id':
          return values.some((v) => (record.id ?? '').startsWith(v));
        case 'name':
          return values.some((v) => record.name.includes(v.replace(/^\//, '')));
        case 'status':
          return values.includes(status);
        case 'exited':
          return status === 'exited' && values.map(Number).includes(exitCode);
        case 'network':
          return values.some((v) => v === 'bridge' || record.networks?.[v] !== undefined);
        case 'ancestor':
          return values.includes(record.image);
        default:
          throw new HyperError(`invalid filter '${key}'`, { kind: 'Invalid' });
      }
    })();
    if (!ok) return false;
  }
  return true;
}

export async function inspectContainer(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const { record, state, health } = await requireContainer(daemon, ref);
  exchange.send(
    200,
    containerInspect(record, state, health, await daemon.job.networks(), await extraFor(daemon, record)),
  );
}

/** Docker's stream ids for the log's streams. */
const STREAM_ID = { stdout: STDOUT, stderr: STDERR } as const;

/**
 * GET /containers/{id}/logs: the service's stdout and stderr as Docker's
 * multiplexed frames, with tail, since, until, timestamps and details, and
 * with follow until the container stops or the client goes.
 */
export async function containerLogs(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const { record } = await requireContainer(daemon, ref);
  const wanted = { stdout: flag(exchange, 'stdout'), stderr: flag(exchange, 'stderr') };
  if (!wanted.stdout && !wanted.stderr)
    throw new HyperError('Bad parameters: you must choose at least one stream', { kind: 'Invalid' });
  const options: LogOptions = {
    tail: tailOf(exchange.url.searchParams.get('tail')),
    timestamps: flag(exchange, 'timestamps'),
    details: flag(exchange, 'details'),
    sinceNs: timeParam(exchange, 'since'),
    untilNs: timeParam(exchange, 'until'),
  };
  const follow = flag(exchange, 'follow');
  const output = exchange.stream(MULTIPLEXED);
  const send = (line: LogRecord): void => {
    if (wanted[line.stream]) output.write(frame(STREAM_ID[line.stream], formatLine(line, options)));
  };
  try {
    // The past first (tail applies to it), then, following, what comes after it in the same log.
    const log = await daemon.job.openLog(record.name);
    const past: LogRecord[] = [];
    for await (const piece of log.read()) past.push(...splitRecord(piece));
    for (const line of selectLines(past, options)) send(line);
    if (follow) {
      for await (const piece of log.follow(exchange.closed)) {
        if (exchange.closed.aborted) break;
        for (const line of splitRecord(piece)) if (inWindow(line, options)) send(line);
      }
    }
  } finally {
    output.end();
  }
}

interface LogOptions {
  tail: number;
  timestamps: boolean;
  details: boolean;
  sinceNs: bigint | undefined;
  untilNs: bigint | undefined;
}

function tailOf(text: string | null): number {
  if (text === null || text === '' || text === 'all') return -1;
  const value = Number(text);
  if (!Number.isInteger(value))
    throw new HyperError(`tail: "${text}" is not a number of lines or "all"`, { kind: 'Invalid' });
  return value;
}

/** since/until: Unix seconds, with a fraction ("1712345678.123"); 0 or absent means no bound. */
function timeParam(exchange: Exchange, name: string): bigint | undefined {
  const text = exchange.url.searchParams.get(name);
  if (text === null || text === '' || text === '0') return undefined;
  const match = /^(\d+)(?:\.(\d{1,9}))?$/.exec(text);
  if (!match) throw new HyperError(`${name}: "${text}" is not a Unix time in seconds`, { kind: 'Invalid' });
  return BigInt(match[1] as string) * 1_000_000_000n + BigInt((match[2] ?? '').padEnd(9, '0'));
}

function inWindow(line: LogRecord, options: LogOptions): boolean {
  if (line.timeNs === undefined) return true;
  if (options.sinceNs !== undefined && line.timeNs < options.sinceNs) return false;
  if (options.untilNs !== undefined && line.timeNs > options.untilNs) return false;
  return true;
}

/** The lines of the past log that go out: in the time window, then the last `tail` of them. Pure. */
export function selectLines(
  lines: readonly LogRecord[],
  options: Pick<LogOptions, 'tail' | 'sinceNs' | 'untilNs'>,
): LogRecord[] {
  const inside = lines.filter((line) => inWindow(line, { ...options, timestamps: false, details: false }));
  return options.tail < 0 ? inside : options.tail === 0 ? [] : inside.slice(-options.tail);
}

/** A record cut at its newlines, each line keeping the record's stream and time. Pure. */
export function splitRecord(record: LogRecord): LogRecord[] {
  const lines: LogRecord[] = [];
  let start = 0;
  for (let at = record.data.indexOf(10); at >= 0; at = record.data.indexOf(10, start)) {
    lines.push({ ...record, data: record.data.subarray(start, at + 1) });
    start = at + 1;
  }
  if (start < record.data.length) lines.push({ ...record, data: record.data.subarray(start) });
  return lines;
}

/** A line as Docker sends it: with timestamps, led by its time (RFC 3339, nanoseconds); with details, by a space. Pure. */
export function formatLine(line: LogRecord, options: Pick<LogOptions, 'timestamps' | 'details'>): Buffer {
  const parts: Buffer[] = [];
  if (options.timestamps) parts.push(Buffer.from(`${rfc3339Nano(line.timeNs)} `));
  if (options.details) parts.push(Buffer.from(' '));
  parts.push(line.data);
  return parts.length === 1 ? line.data : Buffer.concat(parts);
}

function rfc3339Nano(timeNs: bigint | undefined): string {
  if (timeNs === undefined) return '0001-01-01T00:00:00.000000000Z';
  const seconds = timeNs / 1_000_000_000n;
  const nanos = (timeNs % 1_000_000_000n).toString().padStart(9, '0');
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}.${nanos}Z`;
}

/**
 * POST /containers/{id}/attach: the output from now on, as frames, until the
 * container ends (docker run attaches before it starts the container, so all
 * of it). Stdin is not given to the service.
 */
export async function attachContainer(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const { record, state } = await requireContainer(daemon, ref);
  const wanted = flag(exchange, 'stdout') || flag(exchange, 'stderr');
  const { output, input } = exchange.hijack(MULTIPLEXED);
  input.resume();
  await daemon.attach(record.id ?? record.name, () =>
    streamOutput(daemon, exchange, record, state, wanted, output),
  );
}

async function streamOutput(
  daemon: Daemon,
  exchange: Exchange,
  record: VmRecord,
  state: VmState,
  wanted: boolean,
  output: Writable,
): Promise<void> {
  try {
    if (!wanted || !flag(exchange, 'stream')) return;
    if (isCreated(state)) await untilStarted(daemon, record, exchange.closed);
    const streams = { stdout: flag(exchange, 'stdout'), stderr: flag(exchange, 'stderr') };
    // A container already running shows what it writes from now on; one just started, all of it.
    const log = await daemon.job.openLog(record.name);
    if (state.running) await log.skip();
    for await (const piece of log.follow(exchange.closed)) {
      if (exchange.closed.aborted) break;
      if (streams[piece.stream]) output.write(frame(STREAM_ID[piece.stream], piece.data));
    }
  } catch (error: unknown) {
    daemon.log.debug(`attach ${record.name}: ${(error as Error).message}`);
  } finally {
    output.end();
  }
}

/** GET /containers/{id}/top: the guest's processes (ps as busybox gives it). */
export async function topContainer(daemon: Daemon, exchange: Exchange, ref: string): Promise<void> {
  const { record, state } = await requireContainer(daemon, ref);
  if (!state.running)
    throw new HyperError(`Container ${record.id ?? record.name} is not running`, { kind: 'Conflict' });
  const running = await daemon.job.execStream(record.name, ['ps', '-o', 'pid,user,args'], { user: 'root' });
  const chunks: Buffer[] = [];
  for await (const chunk of running.stdout) chunks.push(chunk);
  for await (const _ of running.stderr) void _;
  await running.exitCode;
  const [header = '', ...rows] = Buffer.concat(chunks).toString('utf8').trimEnd().split('\n');
  const titles = header.trim().split(/\s+/);
  exchange.send(200, {
    Titles: titles,
    Processes: rows.map((row) => {
      const fields = row.trim().split(/\s+/);
      return [...fields.slice(0, titles.length - 1), fields.slice(titles.length - 1).join(' ')];
    }),
  });
}

export async function pruneContainers(daemon: Daemon, exchange: Exchange): Promise<void> {
  const filters = parseFilters(exchange.url.searchParams.get('filters'));
  const deleted: string[] = [];
  for (const { record, state } of await daemon.job.list()) {
    if (state.running) continue;
    if (filters.label && !labelsMatch(record.labels, filters.label)) continue;
    await daemon.job.remove(record.name, true);
    daemon.emit('destroy', record);
    deleted.push(record.id ?? record.name);
  }
  exchange.send(200, { ContainersDeleted: deleted, SpaceReclaimed: 0 });
}
