import { JsonLineSocket, protocolError } from './json-socket.js';
import type { ExecResult } from './hypervisor.js';

const POLL_MS = 20;
const SYNC_ATTEMPT_MS = 2000;

/** A QEMU guest agent (qemu-ga) client on the VM's virtio-serial port. */
export class GuestAgent {
  private constructor(private readonly socket: JsonLineSocket) {}

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
      const id = Math.floor(Math.random() * 2 ** 31);
      await socket.request(
        { execute: 'guest-sync-delimited', arguments: { id } },
        (m) => m.return === id,
        timeoutMs,
        'guest-sync-delimited',
      );
      return new GuestAgent(socket);
    } catch (error: unknown) {
      socket.close();
      throw error;
    }
  }

  async execute(command: string, args: Record<string, unknown> = {}, timeoutMs = 10000): Promise<unknown> {
    const message = await this.socket.request(
      { execute: command, arguments: args },
      (m) => 'return' in m || 'error' in m,
      timeoutMs,
      command,
    );
    const error = protocolError(`guest agent ${command}`, message);
    if (error) throw error;
    return message.return;
  }

  /** guest-shutdown gives no answer when it works: the guest is going away. */
  shutdown(): void {
    this.socket.send({ execute: 'guest-shutdown', arguments: { mode: 'powerdown' } });
  }

  /** Runs a program in the guest, capturing stdout, stderr and the exit code. */
  async exec(path: string, args: string[], timeoutMs: number): Promise<ExecResult> {
    const started = (await this.execute('guest-exec', { path, arg: args, 'capture-output': true })) as {
      pid: number;
    };
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
}
