import net from 'node:net';
import { StringDecoder } from 'node:string_decoder';

/** One JSON message a line over a unix socket: the wire format of QMP and of the QEMU guest agent. */
export class JsonLineSocket {
  private buffer = '';
  private readonly decoder = new StringDecoder('utf8');
  private readonly waiting: Array<(message: Record<string, unknown>) => boolean> = [];
  private closedError: Error | undefined;
  /** Settles once the connection is gone, closed by either side. */
  readonly closed: Promise<void>;
  private ended: () => void = () => undefined;

  private constructor(private readonly socket: net.Socket) {
    this.closed = new Promise((resolve) => (this.ended = resolve));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.fail(new Error('connection closed')));
    socket.on('error', (error) => this.fail(error));
  }

  static connect(path: string, timeoutMs: number): Promise<JsonLineSocket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection to ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new JsonLineSocket(socket));
      });
    });
  }

  send(message: unknown): void {
    if (this.closedError) throw this.closedError;
    this.socket.write(`${JSON.stringify(message)}\n`);
  }

  /**
   * Sends `message` and resolves with the first answer `accept` takes. On a
   * socket that is already closed it rejects once, with no stray rejection
   * left behind (the guest may die under a command).
   */
  async request(
    message: unknown,
    accept: (message: Record<string, unknown>) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<Record<string, unknown>> {
    const answer = this.next(accept, timeoutMs, what);
    try {
      this.send(message);
    } catch (error: unknown) {
      answer.catch(() => undefined);
      throw error;
    }
    return answer;
  }

  /** Resolves with the first message (from now on) that `accept` takes. */
  next(
    accept: (message: Record<string, unknown>) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      if (this.closedError) return reject(this.closedError);
      const timer = setTimeout(() => {
        remove();
        reject(new Error(`no answer to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (message: Record<string, unknown>): boolean => {
        if (message.__closed) {
          clearTimeout(timer);
          reject(this.closedError ?? new Error('connection closed'));
          return true;
        }
        if (!accept(message)) return false;
        clearTimeout(timer);
        resolve(message);
        return true;
      };
      const remove = (): void => {
        const index = this.waiting.indexOf(waiter);
        if (index >= 0) this.waiting.splice(index, 1);
      };
      this.waiting.push(waiter);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    // The guest agent prefixes a guest-sync-delimited answer with a 0xFF byte
    // (never valid in UTF-8 JSON); drop it before decoding.
    this.buffer += this.decoder.write(Buffer.from(chunk.filter((byte) => byte !== 0xff)));
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (!line) continue;
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      const index = this.waiting.findIndex((accept) => accept(message));
      if (index >= 0) this.waiting.splice(index, 1);
    }
  }

  private fail(error: Error): void {
    if (this.closedError) return;
    this.closedError = error;
    this.ended();
    for (const waiter of this.waiting.splice(0)) waiter({ __closed: true });
  }
}

/** The `error` member of a QMP or guest-agent answer, as an Error. */
export function protocolError(what: string, message: Record<string, unknown>): Error | undefined {
  const error = message.error as { class?: string; desc?: string } | undefined;
  if (!error) return undefined;
  return new Error(
    `${what} failed: ${error.desc ?? 'unknown error'}${error.class ? ` (${error.class})` : ''}`,
  );
}
