import { JsonLineSocket, protocolError } from '../json-socket.js';

/** A QEMU Machine Protocol client: greeting, capabilities negotiation, then commands with ids. */
export class QmpClient {
  private nextId = 1;

  private constructor(private readonly socket: JsonLineSocket) {}

  static async connect(path: string, timeoutMs = 5000): Promise<QmpClient> {
    const socket = await JsonLineSocket.connect(path, timeoutMs);
    try {
      await socket.next((m) => 'QMP' in m, timeoutMs, 'the QMP greeting');
      const client = new QmpClient(socket);
      await client.execute('qmp_capabilities', {}, timeoutMs);
      return client;
    } catch (error: unknown) {
      socket.close();
      throw error;
    }
  }

  async execute(command: string, args: Record<string, unknown> = {}, timeoutMs = 10000): Promise<unknown> {
    const id = `hyper-${this.nextId++}`;
    const answer = this.socket.next((m) => m.id === id, timeoutMs, `QMP ${command}`);
    this.socket.send({ execute: command, arguments: args, id });
    const message = await answer;
    const error = protocolError(`QMP ${command}`, message);
    if (error) throw error;
    return message.return;
  }

  close(): void {
    this.socket.close();
  }
}
