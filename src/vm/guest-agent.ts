import { JsonLineSocket, protocolError } from './json-socket.js';
import type { ExecResult } from './hypervisor.js';

const POLL_MS = 20;
const SYNC_ATTEMPT_MS = 2000;

/**
 * A QEMU guest agent (qemu-ga) client on the VM's virtio-serial port. Several
 * users may share one: qemu-ga answers in order and its answers name no
 * request, so requests take turns, one outstanding at a time.
 */
export class GuestAgent {
  /** Settles when the last request given a turn has finished. */
  private turns: Promise<unknown> = Promise.resolve();

  private constructor(private readonly socket: JsonLineSocket) {}

  /** Settles once the connection is gone, closed by either side. */
  get closed(): Promise<void> {
    return this.socket.closed;
  }

  /**
   * Connects and resynchronises: stale answers from an earlier client may still
   * sit in the channel, so guest-sync-delimited with a fresh id discards
   * everything before it. Right after boot qemu-ga may not have opened its port
   * yet (QEMU then drops or ignores the connection), so attempts repeat until
   * `timeoutMs` has passed.
   */
  static async connect(path: string, timeoutMs: number): Promise<GuestAgent> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    for (;;) {
      const left = deadline - Date.now();
      try {
        return await GuestAgent.attempt(path, Math.max(100, Math.min(left, SYNC_ATTEMPT_MS)));
      } catch (error: unknown) {
        lastError = error;
      }
      if (Date.now() + POLL_MS * 5 >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS * 5));
    }
    throw new Error(
      `the guest agent did not answer within ${timeoutMs} ms (${(lastError as Error).message})`,
    );
  }

  private static async attempt(path: string, timeoutMs: number): Promise<GuestAgent> {
    const socket = await JsonLineSocket.connect(path, timeoutMs);
    try {
      await resync(socket, timeoutMs);
      return new GuestAgent(socket);
    } catch (error: unknown) {
      socket.close();
      throw error;
    }
  }

  execute(command: string, args: Record<string, unknown> = {}, timeoutMs = 10000): Promise<unknown> {
    return this.inTurn(() => this.ask(command, args, timeoutMs));
  }

  /**
   * guest-shutdown gives no answer when it works (the guest is going away),
   * and an error when it fails. The resync after it skips either, and its
   * answer shows qemu-ga has read the command; when none comes the guest is
   * going, and so is the connection.
   */
  shutdown(): Promise<void> {
    return this.inTurn(async () => {
      this.socket.send({ execute: 'guest-shutdown', arguments: { mode: 'powerdown' } });
      await resync(this.socket, SYNC_ATTEMPT_MS).catch(() => this.close());
    });
  }

  /**
   * Freezes the filesystems at `mountpoints`, runs `during`, then thaws them,
   * all in one turn: while frozen qemu-ga refuses most commands, so other
   * users wait instead of failing. After a failure the filesystems may still
   * be frozen: one thaw is tried before the turn ends, and the caller must
   * make sure.
   */
  whileFrozen(
    mountpoints: readonly string[],
    timeoutMs: number,
    during: () => Promise<unknown>,
  ): Promise<void> {
    return this.inTurn(async () => {
      try {
        await this.ask('guest-fsfreeze-freeze-list', { mountpoints: [...mountpoints] }, timeoutMs);
        await during();
      } catch (error: unknown) {
        await this.ask('guest-fsfreeze-thaw', {}, timeoutMs).catch(() => undefined);
        throw error;
      }
      await this.ask('guest-fsfreeze-thaw', {}, timeoutMs);
    });
  }

  /** Runs a program in the guest, capturing stdout, stderr and the exit code; `input` is its whole stdin. */
  async exec(path: string, args: string[], timeoutMs: number, input?: Buffer): Promise<ExecResult> {
    const started = (await this.execute('guest-exec', {
      path,
      arg: args,
      'capture-output': true,
      ...(input ? { 'input-data': input.toString('base64') } : {}),
    })) as { pid: number };
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = (await this.execute('guest-exec-status', { pid: started.pid })) as {
        exited: boolean;
        exitcode?: number;
        signal?: number;
        'out-data'?: string;
        'err-data'?: string;
      };
      if (status.exited) {
        return {
          exitCode: status.exitcode ?? 128 + (status.signal ?? 0),
          stdout: Buffer.from(status['out-data'] ?? '', 'base64'),
          stderr: Buffer.from(status['err-data'] ?? '', 'base64'),
        };
      }
      if (Date.now() > deadline)
        throw new Error(`command still running after ${timeoutMs} ms: ${[path, ...args].join(' ')}`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  close(): void {
    this.socket.close();
  }

  /** Runs `use` once every request given a turn before it has finished, whether it worked or not. */
  private inTurn<T>(use: () => Promise<T>): Promise<T> {
    const result = this.turns.then(use);
    this.turns = result.catch(() => undefined);
    return result;
  }

  /** One request and its answer; only within a turn. */
  private async ask(command: string, args: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
    let message: Record<string, unknown>;
    try {
      message = await this.socket.request(
        { execute: command, arguments: args },
        (m) => 'return' in m || 'error' in m,
        timeoutMs,
        command,
      );
    } catch (error: unknown) {
      // The answer may still come, and the next request would take it for its own:
      // skip past it, or give up the connection when even that fails.
      await resync(this.socket, SYNC_ATTEMPT_MS).catch(() => this.close());
      throw error;
    }
    const error = protocolError(`guest agent ${command}`, message);
    if (error) throw error;
    return message.return;
  }
}

/** guest-sync-delimited with a fresh id: the answers before its own are stale, and skipped. */
async function resync(socket: JsonLineSocket, timeoutMs: number): Promise<void> {
  const id = Math.floor(Math.random() * 2 ** 31);
  await socket.request(
    { execute: 'guest-sync-delimited', arguments: { id } },
    (m) => m.return === id,
    timeoutMs,
    'guest-sync-delimited',
  );
}
