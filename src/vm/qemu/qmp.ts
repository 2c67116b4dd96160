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
    const message = await this.socket.request(
      { execute: command, arguments: args, id },
      (m) => m.id === id,
      timeoutMs,
      `QMP ${command}`,
    );
    const error = protocolError(`QMP ${command}`, message);
    if (error) throw error;
    return message.return;
  }

  /**
   * Runs a QMP job command (snapshot-save, snapshot-load...) to its end:
   * starts it, polls query-jobs until it has concluded, dismisses it, and
   * throws the job's own error when it failed.
   */
  async runJob(command: string, args: Record<string, unknown>, timeoutMs: number): Promise<void> {
    const id = `hyper-job-${this.nextId}`;
    await this.execute(command, { ...args, 'job-id': id });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const jobs = (await this.execute('query-jobs')) as { id: string; status: string; error?: string }[];
      const job = jobs.find((j) => j.id === id);
      if (!job) throw new Error(`QMP ${command}: job ${id} disappeared`);
      if (job.status === 'concluded') {
        await this.execute('job-dismiss', { id });
        if (job.error) throw new Error(job.error);
        return;
      }
      if (Date.now() > deadline) {
        await this.execute('job-cancel', { id }).catch(() => undefined);
        throw new Error(`QMP ${command} did not finish within ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  close(): void {
    this.socket.close();
  }
}
