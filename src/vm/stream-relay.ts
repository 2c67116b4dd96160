import net from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { Duplex } from 'node:stream';

/**
 * The host side of guest/hyper-relay.c: connections made inside a guest to a
 * relayed Unix socket arrive multiplexed on one virtio-serial port, each as a
 * stream of frames, and each is joined here to a fresh connection of the
 * caller's (`hyper serve` joins them to its own API socket).
 *
 * A frame: 4 bytes stream id (big-endian), 1 byte type, 4 bytes payload
 * length, then the payload. The guest opens streams; either side may half-close
 * (EOF) or drop (CLOSE) one.
 */
export const FrameType = { open: 1, data: 2, eof: 3, close: 4 } as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export interface Frame {
  id: number;
  type: FrameType;
  payload: Buffer;
}

const HEADER_BYTES = 9;
/** The guest's virtio-serial driver moves at most 32 KiB per write; a frame is never more. */
export const MAX_FRAME_BYTES = 32 * 1024;
const MAX_PAYLOAD = MAX_FRAME_BYTES - HEADER_BYTES;

/** One frame on the wire. Pure. */
export function encodeFrame(id: number, type: FrameType, payload: Buffer = Buffer.alloc(0)): Buffer {
  if (payload.length > MAX_PAYLOAD)
    throw new RangeError(`a relay frame carries at most ${MAX_PAYLOAD} bytes`);
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32BE(id, 0);
  header.writeUInt8(type, 4);
  header.writeUInt32BE(payload.length, 5);
  return Buffer.concat([header, payload]);
}

/** Data for one stream, cut into frames of at most MAX_FRAME_BYTES. Pure. */
export function dataFrames(id: number, data: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  for (let at = 0; at < data.length; at += MAX_PAYLOAD)
    frames.push(encodeFrame(id, FrameType.data, data.subarray(at, at + MAX_PAYLOAD)));
  return frames;
}

/** Cuts a byte stream into frames, whatever the chunks it arrives in. */
export class FrameReader {
  private held: Buffer = Buffer.alloc(0);

  /** The frames completed by `chunk`; throws on bytes that are not a frame (the channel is then useless). */
  push(chunk: Buffer): Frame[] {
    this.held = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    const frames: Frame[] = [];
    let at = 0;
    while (this.held.length - at >= HEADER_BYTES) {
      const type = this.held.readUInt8(at + 4);
      const size = this.held.readUInt32BE(at + 5);
      if (type < FrameType.open || type > FrameType.close || size > MAX_PAYLOAD)
        throw new Error(`not a relay frame (type ${type}, ${size} bytes)`);
      if (this.held.length - at < HEADER_BYTES + size) break;
      frames.push({
        id: this.held.readUInt32BE(at),
        type: type as FrameType,
        payload: Buffer.from(this.held.subarray(at + HEADER_BYTES, at + HEADER_BYTES + size)),
      });
      at += HEADER_BYTES + size;
    }
    this.held = this.held.subarray(at);
    return frames;
  }
}

interface Stream {
  peer: Duplex;
  /** The guest sent EOF: nothing more comes from it. */
  guestDone: boolean;
  /** The peer ended: EOF was sent to the guest. */
  peerDone: boolean;
}

/**
 * Serves one connection to the guest's relay port until it closes: each
 * stream the guest opens gets `connect()`, and bytes, half-closes and drops
 * pass both ways. Backpressure is the channel's: a peer that cannot take more
 * pauses the channel, and a full channel pauses every peer.
 */
export function serveChannel(channel: net.Socket, connect: () => Duplex): Promise<void> {
  const streams = new Map<number, Stream>();
  const reader = new FrameReader();
  const paused = new Set<Duplex>();
  const send = (frames: Buffer[]): void => {
    let room = true;
    for (const frame of frames) room = channel.write(frame);
    if (!room)
      for (const { peer } of streams.values()) {
        peer.pause();
        paused.add(peer);
      }
  };
  channel.on('drain', () => {
    for (const peer of paused) peer.resume();
    paused.clear();
  });
  const forget = (id: number): void => {
    const stream = streams.get(id);
    if (!stream) return;
    streams.delete(id);
    paused.delete(stream.peer);
    stream.peer.destroy();
  };
  const open = (id: number): void => {
    const peer = connect();
    const stream: Stream = { peer, guestDone: false, peerDone: false };
    streams.set(id, stream);
    peer.on('data', (chunk: Buffer) => send(dataFrames(id, chunk)));
    peer.on('end', () => {
      stream.peerDone = true;
      send([encodeFrame(id, FrameType.eof)]);
      if (stream.guestDone) forget(id);
    });
    peer.on('error', () => undefined);
    peer.on('close', () => {
      // Closed before both sides were done: the guest's client sees its connection drop.
      if (streams.get(id) !== stream) return;
      streams.delete(id);
      if (!channel.destroyed) send([encodeFrame(id, FrameType.close)]);
    });
  };
  const receive = (frame: Frame): void => {
    if (frame.type === FrameType.open) return open(frame.id);
    const stream = streams.get(frame.id);
    if (!stream) {
      // A stream this side has closed already: the guest is told, unless it is closing it too.
      if (frame.type !== FrameType.close) send([encodeFrame(frame.id, FrameType.close)]);
      return;
    }
    if (frame.type === FrameType.close) return forget(frame.id);
    if (frame.type === FrameType.eof) {
      stream.guestDone = true;
      stream.peer.end();
      if (stream.peerDone) forget(frame.id);
      return;
    }
    if (!stream.peer.write(frame.payload)) {
      channel.pause();
      stream.peer.once('drain', () => channel.resume());
    }
  };
  return new Promise((resolve) => {
    channel.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch {
        // Not the relay's frames: drop the channel; the guest closes its streams and starts afresh.
        channel.destroy();
        return;
      }
      for (const frame of frames) receive(frame);
    });
    channel.on('error', () => undefined);
    // The channel has no half-close of its own: its end is the end of every stream.
    channel.on('end', () => channel.destroy());
    channel.on('close', () => {
      for (const id of [...streams.keys()]) forget(id);
      resolve();
    });
  });
}

/** How often a relay port that does not answer is tried again. */
const RETRY_MS = 200;

/**
 * Keeps serving the guest's relay port at `socketPath` (QEMU's side of the
 * virtio-serial port) until `signal` aborts: a connection that ends (QEMU
 * restarted, or not up yet) is made again.
 */
export async function relayStreams(
  socketPath: string,
  connect: () => Duplex,
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    const channel = await connectChannel(socketPath).catch(() => undefined);
    if (channel) {
      const stop = (): void => {
        channel.destroy();
      };
      signal.addEventListener('abort', stop, { once: true });
      await serveChannel(channel, connect);
      signal.removeEventListener('abort', stop);
    }
    if (!signal.aborted) await delay(RETRY_MS, undefined, { signal }).catch(() => undefined);
  }
}

function connectChannel(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: socketPath, allowHalfOpen: false });
    socket.once('connect', () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
