import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  dataFrames,
  encodeFrame,
  FrameReader,
  FrameType,
  MAX_FRAME_BYTES,
  serveChannel,
  type Frame,
} from '../../../src/vm/stream-relay.js';

test('a frame is its id, type and length big-endian, then the payload', () => {
  expect(encodeFrame(0x01020304, FrameType.data, Buffer.from('hi'))).toEqual(
    Buffer.from([1, 2, 3, 4, 2, 0, 0, 0, 2, 0x68, 0x69]),
  );
  expect(encodeFrame(7, FrameType.eof)).toEqual(Buffer.from([0, 0, 0, 7, 3, 0, 0, 0, 0]));
});

test('data is cut so that no frame is longer than the guest driver moves in one write', () => {
  const frames = dataFrames(1, Buffer.alloc(100_000, 1));
  expect(frames.every((frame) => frame.length <= MAX_FRAME_BYTES)).toBe(true);
  expect(frames.reduce((sum, frame) => sum + frame.length - 9, 0)).toBe(100_000);
  expect(() => encodeFrame(1, FrameType.data, Buffer.alloc(MAX_FRAME_BYTES))).toThrow(RangeError);
});

test('frames come out whole whatever the chunks they arrive in', () => {
  const wire = Buffer.concat([
    encodeFrame(1, FrameType.open),
    encodeFrame(1, FrameType.data, Buffer.from('hello')),
    encodeFrame(2, FrameType.close),
  ]);
  const reader = new FrameReader();
  const frames: Frame[] = [];
  for (let at = 0; at < wire.length; at += 4) frames.push(...reader.push(wire.subarray(at, at + 4)));
  expect(frames.map((f) => [f.id, f.type, f.payload.toString()])).toEqual([
    [1, FrameType.open, ''],
    [1, FrameType.data, 'hello'],
    [2, FrameType.close, ''],
  ]);
});

test('bytes that are not a frame are refused', () => {
  expect(() => new FrameReader().push(Buffer.from([0, 0, 0, 1, 9, 0, 0, 0, 0]))).toThrow('not a relay frame');
  expect(() => new FrameReader().push(Buffer.from([0, 0, 0, 1, 2, 0xff, 0, 0, 0]))).toThrow(
    'not a relay frame',
  );
});

/**
 * The guest's side of the channel, played by the test (the real one is
 * guest/hyper-relay.c, run by the integration tests): frames in, frames out.
 */
class GuestEnd {
  private readonly reader = new FrameReader();
  readonly frames: Frame[] = [];
  private wake: (() => void) | undefined;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.frames.push(...this.reader.push(chunk));
      this.wake?.();
    });
  }

  send(id: number, type: FrameType, payload?: string): void {
    this.socket.write(encodeFrame(id, type, payload === undefined ? undefined : Buffer.from(payload)));
  }

  /** Waits for a frame of this type on this stream; the frames before it stay in `frames`. */
  async until(id: number, type: FrameType): Promise<void> {
    while (!this.frames.some((f) => f.id === id && f.type === type))
      await new Promise<void>((resolve) => (this.wake = resolve));
  }

  data(id: number): string {
    return Buffer.concat(
      this.frames.filter((f) => f.id === id && f.type === FrameType.data).map((f) => f.payload),
    ).toString();
  }
}

let dir: string;
let servers: net.Server[];

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'hyper-relay-test-'));
  servers = [];
});

afterEach(async () => {
  for (const server of servers) await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

/** A unix server; its connections go to `handle`. */
async function serve(name: string, handle: (socket: net.Socket) => void): Promise<string> {
  const socketPath = path.join(dir, name);
  const server = net.createServer({ allowHalfOpen: true }, handle);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return socketPath;
}

/** serveChannel on one end of a connection, the GuestEnd on the other; streams go to `target`. */
async function channel(target: string): Promise<{ guest: GuestEnd; served: Promise<void> }> {
  let served: Promise<void> | undefined;
  const channelPath = await serve('channel', (socket) => {
    served = serveChannel(socket, () => net.connect({ path: target, allowHalfOpen: true }));
  });
  const socket = net.connect(channelPath);
  await new Promise((resolve) => socket.once('connect', resolve));
  while (!served) await new Promise((resolve) => setImmediate(resolve));
  return { guest: new GuestEnd(socket), served };
}

test('a stream is joined to a fresh connection, both ways, half-close included', async () => {
  // Reads all of the request, then answers and ends: a half-close must reach it.
  const target = await serve('echo', (socket) => {
    let got = '';
    socket.on('data', (chunk: Buffer) => (got += chunk.toString()));
    socket.on('end', () => socket.end(`got ${got}`));
  });
  const { guest, served } = await channel(target);
  guest.send(1, FrameType.open);
  guest.send(1, FrameType.data, 'hello ');
  guest.send(1, FrameType.data, 'world');
  guest.send(1, FrameType.eof);
  await guest.until(1, FrameType.eof);
  expect(guest.data(1)).toBe('got hello world');
  guest.socket.destroy();
  await served;
});

test('two streams stay apart', async () => {
  const target = await serve('echo', (socket) => socket.pipe(socket));
  const { guest, served } = await channel(target);
  guest.send(1, FrameType.open);
  guest.send(2, FrameType.open);
  guest.send(2, FrameType.data, 'two');
  guest.send(1, FrameType.data, 'one');
  guest.send(1, FrameType.eof);
  guest.send(2, FrameType.eof);
  await guest.until(1, FrameType.eof);
  await guest.until(2, FrameType.eof);
  expect([guest.data(1), guest.data(2)]).toEqual(['one', 'two']);
  guest.socket.destroy();
  await served;
});

test('a connection the host side ends is ended for the guest; frames for a stream gone get a close', async () => {
  const target = await serve('drop', (socket) => socket.end('bye'));
  const { guest, served } = await channel(target);
  guest.send(1, FrameType.open);
  await guest.until(1, FrameType.eof);
  expect(guest.data(1)).toBe('bye');
  guest.send(5, FrameType.data, 'late');
  await guest.until(5, FrameType.close);
  guest.socket.destroy();
  await served;
});

test('when the channel goes, every joined connection is closed', async () => {
  let reached!: () => void;
  let ended!: () => void;
  const dataReached = new Promise<void>((resolve) => (reached = resolve));
  const peerEnded = new Promise<void>((resolve) => (ended = resolve));
  const target = await serve('hold', (socket) => {
    socket.once('data', reached);
    // Dropped with unread data or not: it ends either way.
    socket.on('error', () => undefined);
    socket.on('end', () => socket.destroy());
    socket.on('close', ended);
  });
  const { guest, served } = await channel(target);
  guest.send(1, FrameType.open);
  guest.send(1, FrameType.data, 'x');
  await dataReached;
  guest.socket.destroy();
  await served;
  await peerEnded;
});

test('bytes that are not frames end the channel', async () => {
  const target = await serve('echo', (socket) => socket.pipe(socket));
  const { guest, served } = await channel(target);
  guest.socket.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
  await served;
});
