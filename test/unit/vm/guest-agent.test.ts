import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentPool } from '../../../src/vm/agent-pool.js';

type Request = { execute: string; arguments?: { id?: number; path?: string; pid?: number } };

/**
 * A stand-in for qemu-ga, for these unit tests only: like qemu-ga it answers
 * each connection's requests one after another, in the order they came. It
 * records the requests, and each that came while an earlier one was still
 * unanswered (which a client must never cause, save for its resync after a
 * timeout). guest-exec gives a new pid; guest-exec-status says exited on
 * the `pollsToExit`th poll of a pid; guest-shutdown fails, with an answer.
 */
class FakeGuestAgent {
  connections = 0;
  disconnections = 0;
  readonly received: string[] = [];
  readonly overlaps: string[] = [];
  private muted = false;
  private held: string | undefined;
  private nextPid = 1;
  private readonly programs = new Map<number, { path: string; polls: number }>();
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    readonly path: string,
    private readonly server: net.Server,
    private readonly pollsToExit: number,
  ) {}

  static async start(path: string, pollsToExit = 3): Promise<FakeGuestAgent> {
    const server = net.createServer();
    const fake = new FakeGuestAgent(path, server, pollsToExit);
    server.on('connection', (socket) => fake.serve(socket));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    return fake;
  }

  /** The answer to the next `command` waits until another request comes: past the client's timeout. */
  holdAnswerTo(command: string): void {
    this.held = command;
  }

  /** From now on nothing is answered, as from a guest that hangs. */
  mute(): void {
    this.muted = true;
  }

  unmute(): void {
    this.muted = false;
  }

  /** Closes every connection from this side, as when the VM stops. */
  dropConnections(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  async stop(): Promise<void> {
    this.dropConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private serve(socket: net.Socket): void {
    this.connections++;
    this.sockets.add(socket);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.disconnections++;
    });
    socket.on('error', () => undefined);
    const unanswered: string[] = [];
    let turn = Promise.resolve();
    let release: (() => void) | undefined;
    let buffer = '';
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const request = JSON.parse(buffer.slice(0, newline)) as Request;
        buffer = buffer.slice(newline + 1);
        const name = [request.execute, request.arguments?.path ?? request.arguments?.pid]
          .filter((part) => part !== undefined)
          .join(' ');
        this.received.push(name);
        if (unanswered.length > 0) this.overlaps.push(`${name} while ${unanswered.join(', ')} unanswered`);
        release?.();
        release = undefined;
        if (this.muted) continue;
        unanswered.push(name);
        let hold: Promise<void> | undefined;
        if (this.held === request.execute) {
          this.held = undefined;
          hold = new Promise((resolve) => (release = resolve));
        }
        turn = turn.then(async () => {
          await hold;
          unanswered.shift();
          if (!socket.destroyed) socket.write(this.answer(request));
        });
      }
    });
  }

  private answer(request: Request): Buffer {
    const line = (message: unknown): Buffer => Buffer.from(`${JSON.stringify(message)}\n`);
    switch (request.execute) {
      case 'guest-sync-delimited':
        // qemu-ga marks this answer with a leading 0xFF byte.
        return Buffer.concat([Buffer.from([0xff]), line({ return: request.arguments?.id })]);
      case 'guest-exec': {
        const pid = this.nextPid++;
        this.programs.set(pid, { path: request.arguments?.path ?? '', polls: 0 });
        return line({ return: { pid } });
      }
      case 'guest-exec-status': {
        const program = this.programs.get(request.arguments?.pid ?? 0);
        if (!program) return line({ error: { class: 'GenericError', desc: 'no such pid' } });
        program.polls++;
        if (program.polls < this.pollsToExit) return line({ return: { exited: false } });
        const out = Buffer.from(`ran ${program.path}`).toString('base64');
        return line({ return: { exited: true, exitcode: 0, 'out-data': out } });
      }
      case 'guest-fsfreeze-freeze-list':
      case 'guest-fsfreeze-thaw':
        return line({ return: 1 });
      case 'guest-shutdown':
        return line({ error: { class: 'GenericError', desc: 'child process has failed to shutdown' } });
      default:
        return line({ error: { class: 'CommandNotFound', desc: `no command ${request.execute}` } });
    }
  }
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('one guest-agent connection per VM, shared in turns', () => {
  let dir: string;
  let fake: FakeGuestAgent;
  let pool: AgentPool;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hyper-ga-'));
    fake = await FakeGuestAgent.start(join(dir, 'agent.sock'));
    pool = new AgentPool();
  });

  afterEach(async () => {
    await fake.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('two users at once share one connection, and both commands complete', async () => {
    const [a, b] = await Promise.all([pool.acquire(fake.path, 1000), pool.acquire(fake.path, 1000)]);
    expect(a.agent).toBe(b.agent);
    const [ranA, ranB] = await Promise.all([
      a.agent.exec('/bin/a', [], 5000),
      b.agent.exec('/bin/b', [], 5000),
    ]);
    expect(ranA.stdout.toString()).toBe('ran /bin/a');
    expect(ranB.stdout.toString()).toBe('ran /bin/b');
    expect(fake.connections).toBe(1);
    // Neither held the agent for its whole run: the second started before the first had ended.
    expect(fake.received.indexOf('guest-exec /bin/b')).toBeLessThan(
      fake.received.lastIndexOf('guest-exec-status 1'),
    );
    a.release();
    b.release();
  });

  test('requests are never outstanding two at a time, and are answered in the order made', async () => {
    const lease = await pool.acquire(fake.path, 1000);
    const paths = Array.from({ length: 8 }, (_, i) => `/bin/p${i}`);
    const started = await Promise.all(paths.map((path) => lease.agent.execute('guest-exec', { path })));
    expect(started).toEqual(paths.map((_, i) => ({ pid: i + 1 })));
    expect(fake.overlaps).toEqual([]);
    lease.release();
  });

  test('a request that timed out does not give its late answer to the next one', async () => {
    const lease = await pool.acquire(fake.path, 1000);
    fake.holdAnswerTo('guest-exec');
    await expect(lease.agent.execute('guest-exec', { path: '/bin/late' }, 50)).rejects.toThrow(
      'no answer to guest-exec within 50 ms',
    );
    await expect(lease.agent.execute('guest-exec', { path: '/bin/next' })).resolves.toEqual({ pid: 2 });
    expect(fake.received).toEqual([
      'guest-sync-delimited',
      'guest-exec /bin/late',
      'guest-sync-delimited',
      'guest-exec /bin/next',
    ]);
    // The resync is the one request made while another was unanswered: it skips the late answer.
    expect(fake.overlaps).toEqual(['guest-sync-delimited while guest-exec /bin/late unanswered']);
    expect(fake.connections).toBe(1);
    lease.release();
  });

  test('when the resync after a timeout fails too, the connection is given up and the next user reconnects', async () => {
    const lease = await pool.acquire(fake.path, 1000);
    fake.mute();
    await expect(lease.agent.execute('guest-exec', { path: '/bin/lost' }, 50)).rejects.toThrow(
      'no answer to guest-exec within 50 ms',
    );
    await lease.agent.closed;
    fake.unmute();
    const next = await pool.acquire(fake.path, 1000);
    expect(next.agent).not.toBe(lease.agent);
    expect((await next.agent.exec('/bin/next', [], 5000)).stdout.toString()).toBe('ran /bin/next');
    expect(fake.connections).toBe(2);
    lease.release();
    next.release();
  });

  test('after the agent side closes the connection, the next acquire reconnects', async () => {
    const held = await pool.acquire(fake.path, 1000);
    fake.dropConnections();
    await held.agent.closed;
    // The user still holding the old connection gets an error on its next request.
    await expect(held.agent.execute('guest-exec', { path: '/bin/old' })).rejects.toThrow();
    const again = await pool.acquire(fake.path, 1000);
    expect(fake.connections).toBe(2);
    // Releasing the old connection leaves the new one alone.
    held.release();
    expect((await again.agent.exec('/bin/new', [], 5000)).stdout.toString()).toBe('ran /bin/new');
    again.release();
  });

  test('releasing the last lease closes the connection; a second release of one lease does nothing', async () => {
    const a = await pool.acquire(fake.path, 1000);
    const b = await pool.acquire(fake.path, 1000);
    a.release();
    a.release();
    await expect(b.agent.execute('guest-exec', { path: '/bin/b' })).resolves.toEqual({ pid: 1 });
    expect(fake.disconnections).toBe(0);
    b.release();
    await b.agent.closed;
    await until(() => fake.disconnections === 1);
    const c = await pool.acquire(fake.path, 1000);
    expect(fake.connections).toBe(2);
    c.release();
  });

  test('a failed connect is not kept: the next acquire tries again', async () => {
    const later = join(dir, 'later.sock');
    await expect(pool.acquire(later, 100)).rejects.toThrow('the guest agent did not answer within 100 ms');
    const agent = await FakeGuestAgent.start(later);
    try {
      const lease = await pool.acquire(later, 1000);
      expect(agent.connections).toBe(1);
      lease.release();
    } finally {
      await agent.stop();
    }
  });

  test('guest-shutdown takes its turn, and its error answer is not taken for the next request', async () => {
    const lease = await pool.acquire(fake.path, 1000);
    const [first, , next] = await Promise.all([
      lease.agent.execute('guest-exec', { path: '/bin/a' }),
      lease.agent.shutdown(),
      lease.agent.execute('guest-exec', { path: '/bin/b' }),
    ]);
    expect(first).toEqual({ pid: 1 });
    expect(next).toEqual({ pid: 2 });
    // A shutdown that works is never answered: the resync follows it at once, within its turn.
    expect(fake.overlaps).toEqual(['guest-sync-delimited while guest-shutdown unanswered']);
    expect(fake.received.slice(-3)).toEqual(['guest-shutdown', 'guest-sync-delimited', 'guest-exec /bin/b']);
    lease.release();
  });

  test('while the filesystems are frozen, other users wait for the thaw', async () => {
    const [a, b] = await Promise.all([pool.acquire(fake.path, 1000), pool.acquire(fake.path, 1000)]);
    let other: Promise<unknown> | undefined;
    await a.agent.whileFrozen(['/data'], 1000, async () => {
      other = b.agent.execute('guest-exec', { path: '/bin/b' });
      // Time for the other request to go out, were it not held back.
      await new Promise((resolve) => setTimeout(resolve, 20));
    });
    await expect(other).resolves.toEqual({ pid: 1 });
    expect(fake.received.slice(1)).toEqual([
      'guest-fsfreeze-freeze-list',
      'guest-fsfreeze-thaw',
      'guest-exec /bin/b',
    ]);
    a.release();
    b.release();
  });
});
