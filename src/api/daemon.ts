import type { BindPolicy } from './bind-policy.js';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { HyperError } from '../errors.js';
import type { Job } from '../engine/job.js';
import type { Reporter } from '../engine/host.js';
import type { VmRecord } from '../engine/record.js';
import type { StoppedState } from '../engine/container.js';

/** How often a started container is checked for its end. */
const WATCH_POLL_MS = 250;
/** How long AutoRemove waits for attached clients to have the last of the output. */
const ATTACH_DRAIN_MS = 10_000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** A container lifecycle event, as GET /events streams them. */
export interface ContainerEvent {
  action: string;
  id: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  exitCode?: number;
}

/** An exec made by POST /containers/{id}/exec, started by POST /exec/{id}/start. */
export interface ExecInstance {
  id: string;
  containerId: string;
  container: string;
  cmd: string[];
  env: string[];
  user: string | undefined;
  workdir: string | undefined;
  attachStdin: boolean;
  running: boolean;
  exitCode: number | null;
}

/** How the daemon logs: each request at debug level, problems at warn. */
export interface DaemonLog {
  debug(line: string): void;
  info(line: string): void;
  warn(line: string): void;
}

/**
 * What `hyper serve` keeps while it runs, beyond the job's own state: exec
 * instances, which containers it removes when they end (AutoRemove), the exit
 * codes of those it removed (for wait?condition=removed), and the event feed.
 * Everything a container is lives in the job.
 */
export class Daemon {
  readonly events = new EventEmitter();
  readonly execs = new Map<string, ExecInstance>();
  /** Containers (by id) removed when their command ends. */
  readonly autoRemove = new Set<string>();
  /** When each container (by id) was last seen to finish. */
  readonly finishedAt = new Map<string, string>();
  /** Exit codes of containers removed by AutoRemove, by id, for waits on their removal. */
  readonly removedExits = new Map<string, number>();
  /** Containers (by id) whose end is being watched, with the abort for their health monitor. */
  private readonly watched = new Map<string, AbortController>();
  /** The attach streams open on each container (by id), settled when each ends. */
  private readonly attached = new Map<string, Set<Promise<void>>>();
  /** Containers this daemon started, by id (for --stop-containers). */
  readonly started = new Set<string>();
  private prepared: Promise<unknown> | undefined;
  /** A new connection to this daemon's own API, for containers given the Docker socket (set once it listens). */
  connectApi: (() => Duplex) | undefined;

  constructor(
    readonly job: Job,
    readonly log: DaemonLog,
    /** Where containers may bind-mount host directories from. */
    readonly binds: BindPolicy,
  ) {
    this.events.setMaxListeners(0);
  }

  /** Installs the tools and guest bundle once, the first time a VM is made. */
  async prepare(): Promise<void> {
    const reporter: Reporter = { info: (line) => this.log.info(line), warn: (line) => this.log.warn(line) };
    this.prepared ??= this.job.prepare(reporter).catch((error: unknown) => {
      this.prepared = undefined;
      throw error;
    });
    await this.prepared;
  }

  emit(action: string, record: VmRecord, extra: { exitCode?: number } = {}): void {
    const event: ContainerEvent = {
      action,
      id: record.id ?? record.name,
      name: record.name,
      image: record.image,
      labels: record.labels,
      ...extra,
    };
    this.events.emit('container', event);
  }

  /**
   * Watches a started container until it ends: its healthcheck runs
   * meanwhile; then "die" is sent and, with AutoRemove, it is removed.
   */
  watch(record: VmRecord): void {
    const id = record.id ?? record.name;
    this.watched.get(id)?.abort();
    const controller = new AbortController();
    this.watched.set(id, controller);
    if (record.healthcheck)
      this.job.monitorHealth(id, controller.signal).catch((error: unknown) => {
        this.log.debug(`${record.name}: health monitor ended: ${(error as Error).message}`);
      });
    // The Docker socket bound into it: its connections reach this daemon while it runs.
    if (this.connectApi && record.machine.relaySockets?.length)
      this.job.relayApi(id, this.connectApi, controller.signal).catch((error: unknown) => {
        this.log.warn(`${record.name}: the Docker socket inside it stopped: ${(error as Error).message}`);
      });
    void this.untilStopped(id, controller.signal)
      .then(async (state) => {
        if (!state || this.watched.get(id) !== controller) return;
        this.watched.delete(id);
        controller.abort();
        const exitCode = state.crash ? 255 : (state.exitCode ?? 255);
        this.finishedAt.set(id, new Date().toISOString());
        this.emit('die', record, { exitCode });
        if (this.autoRemove.has(id)) {
          // As Docker does: the attached clients get all the output first, then the container goes.
          await Promise.race([Promise.all(this.attached.get(id) ?? []), delay(ATTACH_DRAIN_MS)]);
          this.removedExits.set(id, exitCode);
          await this.job.remove(id, true);
          this.autoRemove.delete(id);
          this.emit('destroy', record);
        }
      })
      .catch((error: unknown) => {
        if (this.watched.get(id) === controller) this.watched.delete(id);
        controller.abort();
        this.log.debug(`${record.name}: no longer watched: ${(error as Error).message}`);
      });
  }

  /** The container's state once its command has ended; undefined when the watch was called off first. */
  async untilStopped(id: string, signal: AbortSignal): Promise<StoppedState | undefined> {
    while (!signal.aborted) {
      const inspected = await this.job.inspect(id).catch((error: unknown) => {
        // Removed by AutoRemove between two looks: it ended, with the exit code kept for it.
        const removed = this.removedExits.get(id);
        if (removed === undefined) throw error;
        return { state: { running: false as const, exitCode: removed } };
      });
      const { state } = inspected;
      if (!state.running) return state;
      await new Promise((resolve) => setTimeout(resolve, WATCH_POLL_MS));
    }
    return undefined;
  }

  /** Runs an attach stream, known to AutoRemove, which waits for it before it removes the container. */
  async attach(id: string, stream: () => Promise<void>): Promise<void> {
    const running = stream();
    const settled = running.then(
      () => undefined,
      () => undefined,
    );
    const set = this.attached.get(id) ?? new Set<Promise<void>>();
    set.add(settled);
    this.attached.set(id, set);
    try {
      await running;
    } finally {
      set.delete(settled);
      if (set.size === 0) this.attached.delete(id);
    }
  }

  /** Stops watching (the container is being removed or restarted by a request). */
  unwatch(id: string): void {
    this.watched.get(id)?.abort();
    this.watched.delete(id);
  }

  /** Stops every watch (the daemon is shutting down). */
  close(): void {
    for (const controller of this.watched.values()) controller.abort();
    this.watched.clear();
  }

  newExec(instance: Omit<ExecInstance, 'id' | 'running' | 'exitCode'>): ExecInstance {
    const exec: ExecInstance = {
      ...instance,
      id: randomBytes(32).toString('hex'),
      running: false,
      exitCode: null,
    };
    this.execs.set(exec.id, exec);
    return exec;
  }

  requireExec(id: string): ExecInstance {
    const exec = this.execs.get(id);
    if (!exec) throw new HyperError(`No such exec instance: ${id}`, { kind: 'NotFound' });
    return exec;
  }
}
